#!/usr/bin/env python3
"""Ingest throughput and memory: a 20-feature CSV with inferred types side by side with
polars and pyarrow, then CSV -> Delta with a declared schema, JSON lines -> Delta, a CSV
whose every row is bad (all quarantined), and a merge upsert.

Generates extracts of --rows rows (default 5 million), lands them with the release binary
in a scratch project, and prints a table of rows/s, MB/s and the peak RSS of each run
(measured by the kernel for the child process, via wait4).

When --python has polars, pyarrow and deltalake (`pip install polars pyarrow deltalake`
into a venv outside the repository), the 20-feature extract is also landed with polars
`scan_csv().sink_delta()` and with pyarrow.csv + deltalake (benches/python_ingest.py), and
the table shows lakescore's speed-up over each (their own timing, import time excluded).

    cargo build --release
    python3 benches/ingest.py                    # 5M rows; about 2 GB of input
    python3 benches/ingest.py --rows 1000000 --python ~/.cache/lakescore/bench/bin/python
"""

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from bench_common import release_binary, run, run_command, scratch_folder, write_features_csv

INDUSTRIES = ["Manufacturing", "Retail", "Finance", "Energy", "Software"]
EVENTS = ["login", "report", "export", "api_call"]


def write_csv(path: Path, rows: int, first_id: int = 0, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("account_id,name,industry,is_active,created_at,annual_revenue,employees,score,notes\n")
        chunk = []
        for i in range(first_id, first_id + rows):
            chunk.append(
                f"ACC-{i:09d},\"Company {i}, Inc\",{INDUSTRIES[i % 5]},{'true' if i % 7 else 'false'},"
                f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T09:{i % 60:02d}:00Z,{rng.random() * 1e6:.2f},"
                f"{i % 5000},{rng.random():.6f},note {i}\n"
            )
            if len(chunk) == 100_000:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))


def write_jsonl(path: Path, rows: int, seed: int = 2) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        chunk = []
        for i in range(rows):
            chunk.append(
                f'{{"event_id": {i}, "account_id": "ACC-{i % 100000:09d}", "event": "{EVENTS[i % 4]}", '
                f'"at": "2026-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z", '
                f'"seconds": {rng.random() * 300:.1f}, "ok": {"true" if i % 9 else "false"}}}\n'
            )
            if len(chunk) == 100_000:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))


def write_bad_csv(path: Path, rows: int) -> None:
    """Rows whose integer id is not a number: each one is quarantined."""
    with path.open("w", encoding="utf-8") as out:
        out.write("id,note\n")
        for start in range(0, rows, 100_000):
            out.write("".join(f"x{i},this row is bad: its id is not a number\n" for i in range(start, min(start + 100_000, rows))))


PROJECT = """
[project]
name = "bench"

[[source]]
name = "features_csv"
path = "extracts/features/*.csv"
format = "csv"
table = "raw.features"

[[source]]
name = "accounts_csv"
path = "extracts/csv/*.csv"
format = "csv"
table = "raw.accounts"
dialect = "crm"
[source.schema]
account_id = { type = "string", required = true }
annual_revenue = "decimal(18,2)"

[[source]]
name = "events_json"
path = "extracts/json/*.jsonl"
format = "json"
table = "raw.events"

[[source]]
name = "bad_csv"
path = "extracts/bad/*.csv"
format = "csv"
table = "raw.bad"
max_bad_rows = "100%"
[source.schema]
id = "int"
note = "string"

[[source]]
name = "accounts_merge"
path = "extracts/merge/*.csv"
format = "csv"
table = "raw.accounts_merged"
dialect = "crm"
mode = "merge"
key = ["account_id"]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--binary", default=release_binary())
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    parser.add_argument("--python", default="python3", help="a Python with polars, pyarrow and deltalake")
    options = parser.parse_args()
    if not os.path.exists(options.binary):
        sys.exit(f"{options.binary} not found: run `cargo build --release` first (or pass --binary)")

    with scratch_folder("lakescore-bench-", options.keep) as scratch:
        (scratch / "lakescore.toml").write_text(PROJECT)
        for folder in ["features", "csv", "json", "bad", "merge"]:
            (scratch / "extracts" / folder).mkdir(parents=True)
        rows = options.rows
        print(f"generating {rows:,} rows per format in {scratch} ...", file=sys.stderr)
        features = scratch / "extracts/features/features.csv"
        write_features_csv(features, rows)
        results = []
        elapsed, rss, _ = run(options.binary, scratch, ["ingest", "features_csv"])
        results.append(("CSV, 20 features, inferred types -> Delta", rows, features.stat().st_size, elapsed, rss, None))
        if has_python_stack(options.python):
            for kind in ["polars", "pyarrow"]:
                seconds, rss = python_ingest(options.python, kind, features, scratch)
                name = "polars scan_csv().sink_delta()" if kind == "polars" else "pyarrow.csv + deltalake"
                results.append((f"{name}, same file", rows, features.stat().st_size, seconds, rss, elapsed))
        else:
            print(f"{options.python} has no polars, pyarrow or deltalake: the side-by-side rows are left out", file=sys.stderr)
        csv_file = scratch / "extracts/csv/accounts.csv"
        json_file = scratch / "extracts/json/events.jsonl"
        write_csv(csv_file, rows)
        write_jsonl(json_file, rows)
        bad_file = scratch / "extracts/bad/bad.csv"
        write_bad_csv(bad_file, rows)
        cases = [
            ("CSV -> Delta", "accounts_csv", csv_file),
            ("JSON lines -> Delta", "events_json", json_file),
            ("CSV, every row bad -> quarantine", "bad_csv", bad_file),
        ]
        for name, source, path in cases:
            elapsed, rss, _ = run(options.binary, scratch, ["ingest", source])
            results.append((name, rows, path.stat().st_size, elapsed, rss, None))

        # Merge: a target of `rows` accounts, then a batch of rows/5 where half the keys exist.
        target = scratch / "extracts/merge/a_initial.csv"
        write_csv(target, rows)
        run(options.binary, scratch, ["ingest", "accounts_merge"])
        update = scratch / "extracts/merge/b_update.csv"
        batch = max(rows // 5, 1)
        write_csv(update, batch, first_id=rows - batch // 2, seed=3)
        elapsed, rss, _ = run(options.binary, scratch, ["ingest", "accounts_merge"])
        results.append((f"merge into {rows:,}-row table", batch, update.stat().st_size, elapsed, rss, None))
        check, _, out = run(options.binary, scratch, ["sql", "select count(*) as n from raw.accounts_merged", "--format", "csv"])
        expected = rows + batch - batch // 2
        if out.split()[-1] != str(expected):
            sys.exit(f"merge produced {out.split()[-1]} rows, expected {expected}")

        print()
        print("| case | rows | input MB | seconds | rows/s | MB/s | peak RSS MiB | lakescore faster by |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, count, size, elapsed, rss, ours in results:
            mb = size / 1e6
            ratio = f"{elapsed / ours:.2f}x" if ours else ""
            print(f"| {name} | {count:,} | {mb:,.0f} | {elapsed:.2f} | {count / elapsed:,.0f} | {mb / elapsed:.1f} | {rss:,.0f} | {ratio} |")


def has_python_stack(python: str) -> bool:
    probe = subprocess.run([python, "-c", "import polars, pyarrow, deltalake"], capture_output=True)
    return probe.returncode == 0


def python_ingest(python: str, kind: str, source: Path, scratch: Path) -> tuple:
    """Seconds of the Python landing (its own timing) and the child's peak RSS."""
    script = Path(__file__).resolve().parent / "python_ingest.py"
    _, rss, out = run_command([python, str(script), kind, str(source), str(scratch / f"{kind}_table")], scratch)
    return json.loads(out.strip().splitlines()[-1])["seconds"], rss


if __name__ == "__main__":
    main()
