#!/usr/bin/env python3
"""The Python side of benches/train.py: what a team would train instead of `lakescore
train`, on the same rows.

Reads the training and evaluation CSVs with pandas, encodes them as lakescore does
(numeric columns mean-imputed, and standardized for logistic regression; NaN kept for
the histogram boosters, which route missing values themselves; categorical columns
one-hot), fits one model and prints one JSON line: {"fit_seconds": ..., "auc": ...}, the
fit timed alone (reading and encoding excluded) and the AUC on the evaluation rows.

    python3 benches/python_train.py TRAIN_CSV EVAL_CSV logistic|forest|histgb|lightgbm TREES DEPTH LEAVES
"""

import json
import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from bench_common import CATEGORIES, NUMERIC


def encode(frame: pd.DataFrame, means: pd.Series, stds: pd.Series, kind: str) -> np.ndarray:
    numeric = frame[NUMERIC].astype("float64")
    if kind in ("logistic", "forest"):
        numeric = numeric.fillna(means)
    if kind == "logistic":
        numeric = (numeric - means) / stds
    one_hot = [
        (frame[column].to_numpy()[:, None] == np.array(values)[None, :]).astype("float64")
        for column, values in CATEGORIES.items()
    ]
    return np.hstack([numeric.to_numpy(), *one_hot])


def main() -> None:
    train_csv, eval_csv, kind, trees, depth, leaves = sys.argv[1:7]
    trees, depth, leaves = int(trees), int(depth), int(leaves)
    train = pd.read_csv(train_csv)
    evaluation = pd.read_csv(eval_csv)
    means = train[NUMERIC].mean()
    stds = train[NUMERIC].std(ddof=0)
    x, y = encode(train, means, stds, kind), train["label"].astype(bool).to_numpy()
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=1000)
    elif kind == "forest":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(n_estimators=trees, max_depth=depth, n_jobs=-1, random_state=1)
    elif kind == "histgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(
            max_iter=trees, max_leaf_nodes=leaves, learning_rate=0.1, early_stopping=False, random_state=1
        )
    else:
        import lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=trees, num_leaves=leaves, learning_rate=0.1, verbose=-1)
    started = time.perf_counter()
    model.fit(x, y)
    fit_seconds = time.perf_counter() - started
    probabilities = model.predict_proba(encode(evaluation, means, stds, kind))[:, 1]
    auc = roc_auc_score(evaluation["label"].astype(bool).to_numpy(), probabilities)
    print(json.dumps({"fit_seconds": fit_seconds, "auc": auc}))


if __name__ == "__main__":
    main()
