#!/usr/bin/env python3
"""Drift profiling speed, memory and accuracy: lakescore against NumPy/SciPy doing the
same work on the same data.

Writes a baseline of --baseline-rows rows and a current batch of --rows rows (default
10 million) x 20 features (16 numeric, 2 categorical, 2 boolean; x00 and plan shifted) as
Parquet, lands both with the release binary, trains a logistic model on the baseline, then
times `lakescore drift` (both tables streamed in one pass each) and a NumPy/SciPy script
computing the same statistics (PSI and JS on decile bins, ks_2samp, wasserstein_distance,
chi2_contingency) on arrays loaded into memory. Prints seconds, rows/s, peak RSS and how far
lakescore's KS statistics are from SciPy's exact ones (lakescore summarizes columns of
more than 100,000 values).

    pip install numpy scipy pyarrow
    cargo build --release
    python3 benches/drift.py                  # 10M rows
    python3 benches/drift.py --rows 1000000   # quicker
"""

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import stats
from scipy.spatial.distance import jensenshannon

from bench_common import release_binary, run, scratch_folder

NUMERIC = [f"x{i:02d}" for i in range(16)]
CATEGORICAL = {"plan": ["monthly", "yearly", "none", "trial"], "region": ["north", "south", "east", "west", "central"]}
BOOLEAN = ["flag_a", "flag_b"]
CHUNK = 1_000_000


def table(rng, rows: int, start: int, shifted: bool) -> pa.Table:
    columns = {"id": pa.array([f"C{i:09d}" for i in range(start, start + rows)])}
    for index, name in enumerate(NUMERIC):
        shift = 0.5 if shifted and index == 0 else 0.0
        columns[name] = pa.array(rng.normal(shift, 1.0, rows))
    plan_shares = [0.55, 0.25, 0.1, 0.1] if shifted else [0.3, 0.3, 0.2, 0.2]
    columns["plan"] = pa.array(rng.choice(CATEGORICAL["plan"], rows, p=plan_shares))
    columns["region"] = pa.array(rng.choice(CATEGORICAL["region"], rows))
    columns["flag_a"] = pa.array(rng.random(rows) < 0.3)
    columns["flag_b"] = pa.array(rng.random(rows) < 0.6)
    risk = columns["x00"].to_numpy() - 0.8 * columns["x01"].to_numpy() + rng.normal(0, 1, rows)
    columns["label"] = pa.array(risk > 0.3)
    return pa.table(columns)


def write_parquet(folder: Path, rows: int, seed: int, shifted: bool) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for part, start in enumerate(range(0, rows, CHUNK)):
        pq.write_table(table(rng, min(CHUNK, rows - start), start, shifted), folder / f"part-{part:03d}.parquet")


def project() -> str:
    features = "\n".join(f'{name} = "numeric"' for name in NUMERIC)
    features += '\nplan = "categorical"\nregion = "categorical"\nflag_a = "boolean"\nflag_b = "boolean"\n'
    sources = "\n".join(
        f'[[source]]\nname = "{name}"\npath = "extracts/{name}/*.parquet"\nformat = "parquet"\ntable = "{table}"\n'
        for name, table in [("baseline", "curated.baseline"), ("current", "raw.current")]
    )
    return f"""
[project]
name = "bench-drift"

{sources}
[[model]]
name = "risk"
task = "classification"
algorithm = "logistic_regression"
training_table = "curated.baseline"
label = "label"
key = ["id"]
[model.features]
{features}
"""


def scipy_drift(baseline_dir: Path, current_dir: Path) -> dict:
    """The same statistics with NumPy/SciPy, columns loaded into memory."""
    baseline = pq.read_table(baseline_dir)
    current = pq.read_table(current_dir)
    ks = {}
    for name in NUMERIC:
        b, c = baseline[name].to_numpy(), current[name].to_numpy()
        edges = np.quantile(b, np.linspace(0, 1, 11))[1:-1]
        counts_b = np.bincount(np.searchsorted(edges, b), minlength=10) + 0.5
        counts_c = np.bincount(np.searchsorted(edges, c), minlength=10) + 0.5
        e, a = counts_b / counts_b.sum(), counts_c / counts_c.sum()
        np.sum((a - e) * np.log(a / e))
        jensenshannon(counts_b, counts_c, base=2)
        ks[name] = float(stats.ks_2samp(b, c, method="asymp").statistic)
        stats.wasserstein_distance(b, c) / b.std()
    for name in list(CATEGORICAL) + BOOLEAN:
        counted = [
            {str(entry["values"]): entry["counts"] for entry in pc.value_counts(data[name]).to_pylist()}
            for data in (baseline, current)
        ]
        values = sorted(set(counted[0]) | set(counted[1]))
        counts = np.array([[side.get(v, 0) for v in values] for side in counted], dtype=float)
        stats.chi2_contingency(counts)
        jensenshannon(counts[0], counts[1], base=2)
    return ks


def lakescore_ks(binary: str, scratch: Path) -> dict:
    _, _, out = run(binary, scratch, ["sql", "select column_name, value from monitoring.drift_metrics where metric = 'ks_statistic'", "--format", "csv"])
    return {row["column_name"]: float(row["value"]) for row in csv.DictReader(io.StringIO(out))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--baseline-rows", type=int, default=200_000)
    parser.add_argument("--binary", default=release_binary())
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    parser.add_argument("--scipy-only", metavar="EXTRACTS", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.scipy_only:
        extracts = Path(options.scipy_only)
        print(json.dumps(scipy_drift(extracts / "baseline", extracts / "current")))
        return
    if not os.path.exists(options.binary):
        sys.exit(f"{options.binary} not found: run `cargo build --release` first (or pass --binary)")
    with scratch_folder("lakescore-bench-drift-", options.keep) as scratch:
        (scratch / "lakescore.toml").write_text(project())
        print(f"generating {options.rows:,} + {options.baseline_rows:,} rows x 20 features in {scratch} ...", file=sys.stderr)
        write_parquet(scratch / "extracts/baseline", options.baseline_rows, 1, shifted=False)
        write_parquet(scratch / "extracts/current", options.rows, 2, shifted=True)
        run(options.binary, scratch, ["ingest"])
        run(options.binary, scratch, ["train", "risk"])
        elapsed, rss, out = run(options.binary, scratch, ["drift", "risk", "--table", "raw.current"])
        drifted = [line.split()[0] for line in out.splitlines() if " DRIFTED " in line]
        rows = options.rows + options.baseline_rows
        results = [("lakescore drift (streamed from Delta)", elapsed, rss)]

        # The SciPy side runs in a child process of its own, so its peak RSS is its own.
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, __file__, "--scipy-only", str(scratch / "extracts")],
            stdout=subprocess.PIPE,
        )
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit("the NumPy/SciPy run failed")
        reference = json.loads(child.stdout.read())
        results.append(("NumPy/SciPy (arrays in memory)", time.perf_counter() - started, usage.ru_maxrss / 1024))

        ours = lakescore_ks(options.binary, scratch)
        gap = max(abs(ours[name] - reference[name]) for name in NUMERIC)
        print()
        print(f"{rows:,} rows x 20 features; drifted: {', '.join(drifted)}")
        print("| tool | seconds | rows/s | peak RSS MiB |")
        print("|---|---:|---:|---:|")
        for name, seconds, peak in results:
            print(f"| {name} | {seconds:.1f} | {rows / seconds:,.0f} | {peak:,.0f} |")
        print(f"\nlargest KS statistic difference from scipy.stats.ks_2samp: {gap:.2e}")


if __name__ == "__main__":
    main()
