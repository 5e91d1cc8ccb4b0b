"""Trains the small tree models the score_tree tests load, and records the predictions the
training libraries themselves make on a held-out test set.

    python3 -m venv /tmp/ml && /tmp/ml/bin/pip install xgboost-cpu==3.2.0 lightgbm==4.7.0 numpy
    /tmp/ml/bin/python udfs/scripts/train_models.py

Writes into tests/data/models/:
  xgboost_binary.json      XGBoost, binary:logistic, 30 trees of depth <= 4 (JSON model format)
  lightgbm_binary.txt      LightGBM, binary, 30 trees of <= 15 leaves (text model format)
  lightgbm_regression.txt  LightGBM, regression, 30 trees of <= 15 leaves
  test_set.csv             the test set's features (empty = missing) and each model's predictions
The data is synthetic and seeded, so running the script again gives the same files.
"""

import csv
import pathlib

import lightgbm
import numpy as np
import xgboost

FEATURES = ["sessions_7d", "minutes_7d", "pages_7d", "days_since_signup", "has_avatar", "spend_30d"]
OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "data" / "models"


def synthetic(rows, rng):
    x = np.column_stack([
        rng.poisson(4, rows).astype(float),
        rng.gamma(2.0, 15.0, rows),
        rng.poisson(12, rows).astype(float),
        rng.integers(0, 365, rows).astype(float),
        rng.integers(0, 2, rows).astype(float),
        np.round(rng.exponential(20.0, rows), 2),
    ])
    # Missing values, so the models learn default directions.
    x[rng.random(rows) < 0.08, 1] = np.nan
    x[rng.random(rows) < 0.05, 5] = np.nan
    minutes = np.nan_to_num(x[:, 1], nan=10.0)
    spend = np.nan_to_num(x[:, 5], nan=0.0)
    margin = 0.35 * x[:, 0] + 0.02 * minutes - 0.004 * x[:, 3] + 0.8 * x[:, 4] + 0.03 * spend - 2.0
    label = (rng.random(rows) < 1 / (1 + np.exp(-margin))).astype(int)
    value = 2.0 * x[:, 0] + 0.1 * minutes + 0.5 * spend + rng.normal(0, 1.0, rows)
    return x, label, value


def main():
    rng = np.random.default_rng(7)
    x_train, y_train, v_train = synthetic(4000, rng)
    x_test, _, _ = synthetic(300, rng)
    OUT.mkdir(parents=True, exist_ok=True)

    train = xgboost.DMatrix(x_train, label=y_train, feature_names=FEATURES)
    xgb = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 4, "eta": 0.2, "seed": 7},
        train,
        num_boost_round=30,
    )
    xgb.save_model(OUT / "xgboost_binary.json")
    xgb_pred = xgb.predict(xgboost.DMatrix(x_test, feature_names=FEATURES))

    params = {"num_leaves": 15, "learning_rate": 0.2, "seed": 7, "verbose": -1}
    lgb_binary = lightgbm.train(
        {**params, "objective": "binary"},
        lightgbm.Dataset(x_train, label=y_train, feature_name=FEATURES),
        num_boost_round=30,
    )
    lgb_binary.save_model(OUT / "lightgbm_binary.txt")
    lgb_binary_pred = lgb_binary.predict(x_test)

    lgb_regression = lightgbm.train(
        {**params, "objective": "regression"},
        lightgbm.Dataset(x_train, label=v_train, feature_name=FEATURES),
        num_boost_round=30,
    )
    lgb_regression.save_model(OUT / "lightgbm_regression.txt")
    lgb_regression_pred = lgb_regression.predict(x_test)

    with open(OUT / "test_set.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FEATURES + ["xgboost_binary", "lightgbm_binary", "lightgbm_regression"])
        for row, a, b, c in zip(x_test, xgb_pred, lgb_binary_pred, lgb_regression_pred):
            cells = ["" if np.isnan(v) else repr(float(v)) for v in row]
            writer.writerow(cells + [repr(float(a)), repr(float(b)), repr(float(c))])


if __name__ == "__main__":
    main()
