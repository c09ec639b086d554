#!/usr/bin/env python3
"""Training speed, memory and quality side by side: lakescore's logistic regression,
random forest and gradient boosting against scikit-learn and LightGBM on the same rows.

Generates a seeded table of --rows customers (16 numeric features with ~1% nulls, 4
categorical with 3 to 40 values, a binary label; benches/bench_common.py), lands the
first --train-rows as curated.train and the rest as curated.eval with the release binary,
trains each lakescore model on curated.train (holdout = 0, so every training row is used),
scores curated.eval and computes the AUC of the scored probabilities against the labels.

When --python has scikit-learn and pandas (and LightGBM, when installed: `pip install
scikit-learn pandas deltalake lightgbm` into a venv outside the repository), the same
models train in that Python on the same rows, each in its own process
(benches/python_train.py), and the table shows them next to lakescore's. "fit seconds"
compare like with like: the fit alone (lakescore's from its debug log, Python's timed
around `fit`); lakescore's "command seconds" are the whole `lakescore train` (reading the
Delta table, encoding, fitting, scoring every row for the metrics and the drift baseline,
profiling, registering).

    cargo build --release
    python3 benches/train.py --repeat 3 --python ~/.cache/lakescore/bench/bin/python
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from bench_common import CATEGORIES, NUMERIC, release_binary, run, run_command, run_logged, scratch_folder, write_features_csv

TREES = 50
DEPTH = 10
BOOSTED_TREES = 100
LEAVES = 31


def project() -> str:
    schema = "\n".join(f'{name} = "float"' for name in NUMERIC)
    schema += "".join(f'\n{name} = "string"' for name in CATEGORIES)
    features = "\n".join(f'{name} = "numeric"' for name in NUMERIC)
    features += "".join(f'\n{name} = "categorical"' for name in CATEGORIES)
    sources = "".join(
        f"""
[[source]]
name = "{name}"
path = "extracts/{name}.csv"
format = "csv"
table = "curated.{name}"
[source.schema]
id = {{ type = "string", required = true }}
{schema}
label = "boolean"
"""
        for name in ["train", "eval"]
    )
    models = "".join(
        f"""
[[model]]
name = "{name}"
task = "classification"
algorithm = "{algorithm}"
params = {{ {params} }}
holdout = 0.0
training_table = "curated.train"
label = "label"
key = ["id"]
[model.features]
{features}
"""
        for name, algorithm, params in [
            ("logistic", "logistic_regression", ""),
            ("forest", "random_forest", f"n_trees = {TREES}, max_depth = {DEPTH}"),
            ("boosting", "gradient_boosting", f"n_estimators = {BOOSTED_TREES}, max_leaves = {LEAVES}, learning_rate = 0.1"),
        ]
    )
    return f'[project]\nname = "bench-train"\n{sources}{models}'


def split_csv(whole: Path, train: Path, evaluation: Path, train_rows: int) -> None:
    with whole.open() as rows, train.open("w") as first, evaluation.open("w") as rest:
        header = next(rows)
        first.write(header)
        rest.write(header)
        for at, line in enumerate(rows):
            (first if at < train_rows else rest).write(line)


def scored_auc(python: str, scratch: Path, model: str) -> float:
    """AUC of scored.<model>'s probabilities against curated.eval's labels."""
    script = (
        "import sys, json\n"
        "from deltalake import DeltaTable\n"
        "from sklearn.metrics import roc_auc_score\n"
        "scored = DeltaTable(sys.argv[1]).to_pandas(columns=['id', 'probability'])\n"
        "labels = DeltaTable(sys.argv[2]).to_pandas(columns=['id', 'label'])\n"
        "joined = scored.merge(labels, on='id')\n"
        "print(json.dumps(roc_auc_score(joined['label'].astype(bool), joined['probability'])))\n"
    )
    _, _, out = run_command(
        [python, "-c", script, str(scratch / f"lakehouse/scored/{model}"), str(scratch / "lakehouse/curated/eval")],
        scratch,
    )
    return json.loads(out.strip().splitlines()[-1])


def train(binary: str, scratch: Path, model: str) -> tuple:
    """Runs `lakescore train MODEL`; returns (command seconds, fit seconds, peak RSS MiB)."""
    elapsed, rss, _, errors = run_logged(
        [binary, "train", model], scratch, env={"LAKESCORE_LOG": "lakescore_engine=debug"}
    )
    fitted = re.search(r"fitted the model.*elapsed=([0-9.]+)(ms|s)", errors)
    if not fitted:
        sys.exit(f"train {model}: no fit time in the debug log:\n{errors}")
    return elapsed, float(fitted.group(1)) / (1000 if fitted.group(2) == "ms" else 1), rss


def median_of(runs: int, measure) -> tuple:
    """`measure()` run `runs` times; each figure of its tuple is the median of the runs."""
    measured = [measure() for _ in range(max(runs, 1))]
    return tuple(statistics.median(figures) for figures in zip(*measured))


def has_modules(python: str, modules: str) -> bool:
    return subprocess.run([python, "-c", f"import {modules}"], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--binary", default=release_binary())
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    parser.add_argument("--repeat", type=int, default=1, help="fit every model this many times and show the medians (this machine's speed varies from run to run)")
    parser.add_argument("--python", default="python3", help="a Python with scikit-learn, pandas and deltalake")
    options = parser.parse_args()
    if not os.path.exists(options.binary):
        sys.exit(f"{options.binary} not found: run `cargo build --release` first (or pass --binary)")
    if not has_modules(options.python, "sklearn, pandas, deltalake"):
        sys.exit(f"{options.python} lacks scikit-learn, pandas or deltalake, which the AUCs are computed with")
    with scratch_folder("lakescore-bench-train-", options.keep) as scratch:
        (scratch / "lakescore.toml").write_text(project())
        extracts = scratch / "extracts"
        extracts.mkdir()
        print(f"generating {options.rows:,} rows in {scratch} ...", file=sys.stderr)
        write_features_csv(extracts / "all.csv", options.rows)
        split_csv(extracts / "all.csv", extracts / "train.csv", extracts / "eval.csv", options.train_rows)
        (extracts / "all.csv").unlink()
        run(options.binary, scratch, ["ingest"])
        results = []
        anchors = {
            "logistic": [("scikit-learn LogisticRegression (lbfgs)", "logistic")],
            "forest": [(f"scikit-learn RandomForestClassifier (n_jobs={os.cpu_count()})", "forest")],
            "boosting": [("scikit-learn HistGradientBoostingClassifier", "histgb"), ("LightGBM LGBMClassifier", "lightgbm")],
        }
        for model, algorithm in [("logistic", "logistic_regression"), ("forest", "random_forest"), ("boosting", "gradient_boosting")]:
            command, fit, rss = median_of(options.repeat, lambda: train(options.binary, scratch, model))
            run(options.binary, scratch, ["score", model, "--input", "curated.eval"])
            ours = (f"lakescore {algorithm}", fit, command, rss, scored_auc(options.python, scratch, model))
            results.append(ours)
            for name, kind in anchors[model]:
                if kind == "lightgbm" and not has_modules(options.python, "lightgbm"):
                    print(f"{options.python} has no lightgbm: its row is left out", file=sys.stderr)
                    continue
                def anchor() -> tuple:
                    _, rss, out = run_command(
                        [options.python, str(Path(__file__).resolve().parent / "python_train.py"),
                         str(extracts / "train.csv"), str(extracts / "eval.csv"), kind, str(BOOSTED_TREES if kind in ("histgb", "lightgbm") else TREES), str(DEPTH), str(LEAVES)],
                        scratch,
                    )
                    measured = json.loads(out.strip().splitlines()[-1])
                    return measured["fit_seconds"], rss, measured["auc"]

                fit_seconds, rss, auc = median_of(options.repeat, anchor)
                results.append((name, fit_seconds, None, rss, auc, ours))
        print()
        print(f"{options.train_rows:,} training rows, {options.rows - options.train_rows:,} evaluation rows; medians of {options.repeat} run(s); forest {TREES} trees of depth {DEPTH}; boosting {BOOSTED_TREES} trees of {LEAVES} leaves, learning rate 0.1")
        print()
        print("| model | fit seconds | command seconds | peak RSS MiB | holdout AUC | lakescore fit time / this | lakescore AUC − this |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in results:
            name, fit, command, rss, auc = row[:5]
            versus = row[5] if len(row) > 5 else None
            ratio = f"{versus[1] / fit:.2f}" if versus else ""
            gap = f"{versus[4] - auc:+.4f}" if versus else ""
            whole = f"{command:.2f}" if command else ""
            print(f"| {name} | {fit:.2f} | {whole} | {rss:,.0f} | {auc:.4f} | {ratio} | {gap} |")


if __name__ == "__main__":
    main()
