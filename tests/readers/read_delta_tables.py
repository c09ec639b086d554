"""Reads Delta tables with two independent readers, the deltalake Python package and
polars, and prints one JSON line per table: the rows each reader saw and the column
types (pyarrow's names from deltalake, polars' own dtypes).

    python read_delta_tables.py LAKEHOUSE_ROOT schema.name [schema.name ...]

The lakescore end-to-end tests run it on every table lakescore writes.
"""

import json
import os
import sys

import deltalake
import polars


def read(root, table):
    schema, name = table.split(".", 1)
    path = os.path.join(root, schema, name)
    arrow = deltalake.DeltaTable(path).to_pyarrow_table()
    frame = polars.read_delta(path)
    return {
        "table": table,
        "deltalake_rows": arrow.num_rows,
        "polars_rows": frame.height,
        "columns": [
            {"name": field.name, "deltalake": str(field.type), "polars": str(dtype)}
            for field, dtype in zip(arrow.schema, frame.dtypes)
        ],
    }


def main():
    root, tables = sys.argv[1], sys.argv[2:]
    for table in tables:
        try:
            print(json.dumps(read(root, table)), flush=True)
        except Exception as error:  # every failure is reported with its table
            print(json.dumps({"table": table, "error": f"{type(error).__name__}: {error}"}), flush=True)


if __name__ == "__main__":
    main()
