#!/usr/bin/env python3
"""Training and scoring speed and memory: logistic regression and a random forest on
generated data with 20 features (16 numeric, 2 categorical, 2 boolean).

Lands --rows rows (default 1 million) with the release binary in a scratch project, trains
each model (the forest on a sample of --forest-rows rows, recorded in its manifest), scores
all rows into a Delta table with explanations, and prints a table of seconds, rows/s and
the peak RSS of each step (measured by the kernel for the child process, via wait4).

    cargo build --release
    python3 benches/models.py                    # 1M rows
    python3 benches/models.py --rows 200000      # quicker
"""

import argparse
import os
import random
import sys
from pathlib import Path

from bench_common import release_binary, run, scratch_folder

NUMERIC = [f"x{i:02d}" for i in range(16)]
PLANS = ["monthly", "yearly", "none", "trial"]
REGIONS = ["north", "south", "east", "west", "central"]


def write_csv(path: Path, rows: int, seed: int = 5) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write("id," + ",".join(NUMERIC) + ",plan,region,flag_a,flag_b,label\n")
        chunk = []
        for i in range(rows):
            xs = [rng.gauss(0, 1) for _ in NUMERIC]
            plan = PLANS[rng.randrange(4)]
            region = REGIONS[rng.randrange(5)]
            flag_a = rng.random() < 0.3
            flag_b = rng.random() < 0.6
            risk = xs[0] - 0.8 * xs[1] + 0.5 * xs[2] * xs[3] + (0.7 if plan == "monthly" else 0) + (0.4 if flag_a else 0) + rng.gauss(0, 1)
            chunk.append(
                f"C{i:08d}," + ",".join(f"{x:.4f}" for x in xs)
                + f",{plan},{region},{str(flag_a).lower()},{str(flag_b).lower()},{str(risk > 0.5).lower()}\n"
            )
            if len(chunk) == 100_000:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))


def project(forest_rows: int) -> str:
    features = "\n".join(f'{name} = "numeric"' for name in NUMERIC)
    features += '\nplan = "categorical"\nregion = "categorical"\nflag_a = "boolean"\nflag_b = "boolean"\n'
    schema = "\n".join(f'{name} = "float"' for name in NUMERIC)
    return f"""
[project]
name = "bench-models"

[[source]]
name = "customers"
path = "extracts/customers.csv"
format = "csv"
table = "curated.customers"
[source.schema]
id = {{ type = "string", required = true }}
{schema}
plan = "string"
region = "string"
flag_a = "boolean"
flag_b = "boolean"
label = "boolean"

[[model]]
name = "logistic"
task = "classification"
algorithm = "logistic_regression"
training_table = "curated.customers"
label = "label"
key = ["id"]
[model.features]
{features}

[[model]]
name = "forest"
task = "classification"
algorithm = "random_forest"
params = {{ n_trees = 20, max_depth = 10 }}
max_training_rows = {forest_rows}
training_table = "curated.customers"
label = "label"
key = ["id"]
[model.features]
{features}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--forest-rows", type=int, default=200_000, help="rows the forest trains on (sampled)")
    parser.add_argument("--binary", default=release_binary())
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    options = parser.parse_args()
    if not os.path.exists(options.binary):
        sys.exit(f"{options.binary} not found: run `cargo build --release` first (or pass --binary)")
    with scratch_folder("lakescore-bench-models-", options.keep) as scratch:
        (scratch / "lakescore.toml").write_text(project(options.forest_rows))
        (scratch / "extracts").mkdir()
        print(f"generating {options.rows:,} rows x 20 features in {scratch} ...", file=sys.stderr)
        write_csv(scratch / "extracts/customers.csv", options.rows)
        run(options.binary, scratch, ["ingest"])
        results = []
        for model in ["logistic", "forest"]:
            elapsed, rss, out = run(options.binary, scratch, ["train", model])
            trained = out.split(" (")[1].split(" rows")[0]
            metrics = out.split("metrics: ")[1].split(",")[0]
            results.append((f"train {model} ({metrics})", int(trained), elapsed, rss))
        for model in ["logistic", "forest"]:
            elapsed, rss, out = run(options.binary, scratch, ["score", model, "--input", "curated.customers"])
            results.append((f"score with {model} (+ explanations) into Delta", options.rows, elapsed, rss))
        print()
        print("| step | rows | seconds | rows/s | peak RSS MiB |")
        print("|---|---:|---:|---:|---:|")
        for name, count, elapsed, rss in results:
            print(f"| {name} | {count:,} | {elapsed:.1f} | {count / elapsed:,.0f} | {rss:,.0f} |")


if __name__ == "__main__":
    main()
