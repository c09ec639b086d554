#!/usr/bin/env python3
"""The scikit-learn side of benches/models.py: what a team would run instead of
`lakescore score`, on the same Delta table.

Trains a model like lakescore's (logistic regression, or a random forest with the same
trees and depth) on the rows lakescore trained on, then times the scoring a team would
write: read the table with the deltalake package into pandas, impute and one-hot encode
as lakescore does, `predict_proba`, and append id, prediction and probability to a Delta
table. No explanations (scikit-learn has none built in). Prints one JSON line:
{"train_seconds": ..., "score_seconds": ..., "rows": ...}.

    python3 benches/sklearn_score.py TABLE_PATH OUT_PATH logistic|forest TRAIN_ROWS TREES DEPTH
"""

import json
import sys
import time

import numpy as np
import pandas as pd
from deltalake import DeltaTable, write_deltalake
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

NUMERIC = [f"x{i:02d}" for i in range(16)]
CATEGORICAL = ["plan", "region"]
BOOLEAN = ["flag_a", "flag_b"]


def encode(frame: pd.DataFrame, means: pd.Series, categories: dict) -> np.ndarray:
    numeric = frame[NUMERIC].astype("float64").fillna(means)
    booleans = frame[BOOLEAN].astype("float64").fillna(0.0)
    one_hot = [
        pd.Categorical(frame[column], categories=categories[column]).codes[:, None]
        == np.arange(len(categories[column]))[None, :]
        for column in CATEGORICAL
    ]
    return np.hstack([numeric.to_numpy(), booleans.to_numpy(), *[o.astype("float64") for o in one_hot]])


def main() -> None:
    table, out, kind, train_rows, trees, depth = sys.argv[1:7]
    frame = DeltaTable(table).to_pandas()
    train = frame.iloc[: int(train_rows)]
    means = train[NUMERIC].astype("float64").mean()
    categories = {c: sorted(train[c].dropna().unique()) for c in CATEGORICAL}
    started = time.perf_counter()
    if kind == "logistic":
        model = LogisticRegression(max_iter=200)
    else:
        model = RandomForestClassifier(n_estimators=int(trees), max_depth=int(depth), n_jobs=2, random_state=1)
    model.fit(encode(train, means, categories), train["label"].astype(bool))
    train_seconds = time.perf_counter() - started
    del frame, train

    started = time.perf_counter()
    frame = DeltaTable(table).to_pandas()
    probabilities = model.predict_proba(encode(frame, means, categories))[:, 1]
    scored = pd.DataFrame(
        {
            "id": frame["id"],
            "prediction": probabilities > 0.5,
            "probability": probabilities,
        }
    )
    write_deltalake(out, scored, mode="append")
    score_seconds = time.perf_counter() - started
    print(json.dumps({"train_seconds": train_seconds, "score_seconds": score_seconds, "rows": len(scored)}))


if __name__ == "__main__":
    main()
