#!/usr/bin/env python3
"""Training and scoring speed and memory: logistic regression and a random forest on
generated data with 20 features (16 numeric, 2 categorical, 2 boolean).

Lands --rows rows (default 1 million) with the release binary in a scratch project, trains
each model (the forest, --forest-trees trees of depth 10, on a sample of --forest-rows
rows, recorded in its manifest), scores all rows into a new Delta table with explanations,
trains the model's second version and scores the rows again into the same table (an
append), and prints a table of seconds, rows/s and the peak RSS of each step (measured by
the kernel for the child process, via wait4). The speed-up over scikit-learn is that of
the first scoring: both create a table.

When --python has scikit-learn, pandas and deltalake (`pip install scikit-learn pandas
deltalake pyarrow` into a venv outside the repository), the same scoring runs side by side
(benches/sklearn_score.py: read the Delta table into pandas, encode, predict_proba, append
to Delta, without explanations) and the table shows lakescore's speed-up over it. When it
also has polars, the table shows how long polars, pyarrow and deltalake take only to write
the rows lakescore's first logistic scoring wrote (benches/python_write.py), a floor under
any Python pipeline with the same output.

    cargo build --release
    python3 benches/models.py                    # 1M rows
    python3 benches/models.py --rows 200000 --python ~/.cache/lakescore/bench/bin/python
"""

import argparse
import os
import random
import sys
from pathlib import Path

import json
import subprocess

from bench_common import release_binary, run, run_command, scratch_folder

FOREST_DEPTH = 10

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


def project(forest_rows: int, forest_trees: int) -> str:
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
params = {{ n_trees = {forest_trees}, max_depth = {FOREST_DEPTH} }}
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
    parser.add_argument("--forest-trees", type=int, default=50, help="trees of the forest (depth 10)")
    parser.add_argument("--binary", default=release_binary())
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    parser.add_argument("--python", default="python3", help="a Python with scikit-learn, pandas and deltalake")
    options = parser.parse_args()
    if not os.path.exists(options.binary):
        sys.exit(f"{options.binary} not found: run `cargo build --release` first (or pass --binary)")
    with scratch_folder("lakescore-bench-models-", options.keep) as scratch:
        (scratch / "lakescore.toml").write_text(project(options.forest_rows, options.forest_trees))
        (scratch / "extracts").mkdir()
        print(f"generating {options.rows:,} rows x 20 features in {scratch} ...", file=sys.stderr)
        write_csv(scratch / "extracts/customers.csv", options.rows)
        run(options.binary, scratch, ["ingest"])
        results = []
        for model in ["logistic", "forest"]:
            elapsed, rss, out = run(options.binary, scratch, ["train", model])
            trained = out.split(" (")[1].split(" rows")[0]
            metrics = out.split("metrics: ")[1].split(",")[0]
            results.append((f"train {model} ({metrics})", int(trained), elapsed, rss, None))
        sklearn = has_sklearn(options.python)
        for model in ["logistic", "forest"]:
            elapsed, rss, out = run(options.binary, scratch, ["score", model, "--input", "curated.customers"])
            results.append((f"score with {model} (+ explanations) into a new Delta table", options.rows, elapsed, rss, None))
            if model == "logistic" and has_modules(options.python, "polars, pyarrow, deltalake"):
                results.append(python_writing(options, scratch, elapsed))
            # The next version of the model scores the same rows into the same table: an
            # append to an existing table, a writer per core.
            run(options.binary, scratch, ["train", model])
            appended, rss, out = run(options.binary, scratch, ["score", f"{model}:2", "--input", "curated.customers"])
            results.append((f"score with {model} version 2, appending to that table", options.rows, appended, rss, None))
            if sklearn:
                seconds, rss = sklearn_scoring(options, scratch, model)
                results.append((f"scikit-learn {model}: pandas + predict_proba + Delta, no explanations", options.rows, seconds, rss, elapsed))
        if not sklearn:
            print(f"{options.python} has no scikit-learn, pandas or deltalake: the side-by-side rows are left out", file=sys.stderr)
        print()
        print("| step | rows | seconds | rows/s | peak RSS MiB | lakescore faster by |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, count, elapsed, rss, ours in results:
            ratio = f"{elapsed / ours:.2f}x" if ours else ""
            print(f"| {name} | {count:,} | {elapsed:.1f} | {count / elapsed:,.0f} | {rss:,.0f} | {ratio} |")


def has_sklearn(python: str) -> bool:
    return has_modules(python, "sklearn, pandas, deltalake")


def has_modules(python: str, modules: str) -> bool:
    probe = subprocess.run([python, "-c", f"import {modules}"], capture_output=True)
    return probe.returncode == 0


def python_writing(options, scratch: Path, ours: float) -> tuple:
    """The table row for writing lakescore's scored rows alone with the Python tools."""
    script = Path(__file__).resolve().parent / "python_write.py"
    _, rss, out = run_command(
        [options.python, str(script), str(scratch / "lakehouse/scored/logistic"), str(scratch / "python_write")],
        scratch,
    )
    seconds = json.loads(out.strip().splitlines()[-1])
    name = (f"only writing those scored rows from memory: polars {seconds['polars']:.2f} s, "
            f"pyarrow {seconds['pyarrow']:.2f} s, deltalake {seconds['deltalake']:.2f} s")
    return (name, seconds["rows"], seconds["polars"], rss, ours)


def sklearn_scoring(options, scratch: Path, model: str) -> tuple:
    """Seconds of scikit-learn's scoring (its own timing, training excluded) and the child's peak RSS."""
    script = Path(__file__).resolve().parent / "sklearn_score.py"
    train_rows = options.forest_rows if model == "forest" else options.rows
    _, rss, out = run_command(
        [options.python, str(script), str(scratch / "lakehouse/curated/customers"), str(scratch / f"sklearn_{model}"),
         model, str(train_rows), str(options.forest_trees), str(FOREST_DEPTH)],
        scratch,
    )
    return json.loads(out.strip().splitlines()[-1])["score_seconds"], rss


if __name__ == "__main__":
    main()
