#!/usr/bin/env python3
"""How long the Python tools take only to write the rows lakescore scored, for
benches/models.py: a floor under any Python pipeline that produced the same output.

Reads a scored Delta table (explanations and lineage included) into memory, then times
writing it again with polars (`write_parquet`, Snappy), pyarrow (`write_table`, Snappy)
and the deltalake package (`write_deltalake`), each into a scratch folder, the best of two
runs. Prints one JSON line: {"polars": ..., "pyarrow": ..., "deltalake": ..., "rows": ...}.

    python3 benches/python_write.py SCORED_TABLE_PATH SCRATCH_FOLDER
"""

import json
import shutil
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake


def best_of_two(write, target: Path) -> float:
    best = float("inf")
    for _ in range(2):
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        started = time.perf_counter()
        write(target)
        best = min(best, time.perf_counter() - started)
    shutil.rmtree(target, ignore_errors=True)
    return best


def main() -> None:
    source, scratch = sys.argv[1], Path(sys.argv[2])
    table = DeltaTable(source).to_pyarrow_table()
    frame = pl.from_arrow(table)
    seconds = {
        "polars": best_of_two(lambda t: frame.write_parquet(t / "scored.parquet", compression="snappy"), scratch / "polars"),
        "pyarrow": best_of_two(lambda t: pq.write_table(table, t / "scored.parquet", compression="snappy"), scratch / "pyarrow"),
        "deltalake": best_of_two(lambda t: write_deltalake(str(t / "scored"), table), scratch / "deltalake"),
    }
    print(json.dumps({**seconds, "rows": table.num_rows}))


if __name__ == "__main__":
    main()
