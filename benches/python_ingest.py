#!/usr/bin/env python3
"""The Python side of benches/ingest.py: what a team would run instead of `lakescore
ingest` to land a CSV extract as a Delta table, with types inferred.

    python3 benches/python_ingest.py polars|pyarrow CSV_PATH TABLE_PATH

polars: `scan_csv(...).sink_delta(...)` (streaming). pyarrow: `pyarrow.csv.read_csv` and
`deltalake.write_deltalake`. Neither adds lineage columns, quarantines bad rows or records
the file in a ledger. Prints one JSON line: {"seconds": ...} (import time excluded).
"""

import json
import sys
import time


def main() -> None:
    kind, source, table = sys.argv[1:4]
    if kind == "polars":
        import polars as pl

        started = time.perf_counter()
        pl.scan_csv(source).sink_delta(table)
    else:
        import pyarrow.csv
        from deltalake import write_deltalake

        started = time.perf_counter()
        write_deltalake(table, pyarrow.csv.read_csv(source))
    print(json.dumps({"seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
