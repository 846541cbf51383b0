"""Trains the reference latency models on a matrix exported by placewise.

Reads the CSV that `placewise train --export-matrix FILE` writes, keeps its train/test
split (the `split` column), trains Python LightGBM and XGBoost (hist) with the
hyperparameters given on the command line, and writes their test RMSE and fit times as
JSON. Nothing is computed from the data beyond what the libraries do.

Usage:
    python3 latency_reference.py MATRIX.csv OUT.json [--trees 100] [--max-depth 5]
        [--learning-rate 0.1] [--threads 2] [--repeats 3]
"""

import argparse
import csv
import json
import platform
import time

import lightgbm
import numpy as np
import xgboost

NON_FEATURES = {"service_id", "date", "region", "latency_ms", "oracle_latency_ms", "split"}


def read_matrix(path):
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    features = [name for name in header if name not in NON_FEATURES]
    index = {name: k for k, name in enumerate(header)}
    x = np.array([[float(row[index[f]]) for f in features] for row in rows])
    y = np.array([float(row[index["latency_ms"]]) for row in rows])
    oracle = np.array([float(row[index["oracle_latency_ms"]]) for row in rows])
    test = np.array([row[index["split"]] == "test" for row in rows])
    return features, x, y, oracle, test


def rmse(predicted, actual):
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def timed_fit(fit, repeats):
    """Returns the last fitted model and the median fit time in seconds."""
    times = []
    model = None
    for _ in range(repeats):
        started = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - started)
    return model, float(np.median(times)), times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("matrix")
    parser.add_argument("out")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--max-depth", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--num-leaves", type=int, default=31)
    parser.add_argument("--min-data-in-leaf", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    features, x, y, oracle, test = read_matrix(args.matrix)
    train = ~test
    x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]

    lightgbm_params = {
        "objective": "regression",
        "num_iterations": args.trees,
        "max_depth": args.max_depth,
        "learning_rate": args.learning_rate,
        "num_leaves": args.num_leaves,
        "min_data_in_leaf": args.min_data_in_leaf,
        "num_threads": args.threads,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }

    def fit_lightgbm():
        data = lightgbm.Dataset(x_train, label=y_train, feature_name=features)
        return lightgbm.train(lightgbm_params, data)

    def fit_xgboost():
        model = xgboost.XGBRegressor(
            n_estimators=args.trees,
            max_depth=args.max_depth,
            learning_rate=args.learning_rate,
            tree_method="hist",
            n_jobs=args.threads,
            random_state=0,
        )
        return model.fit(x_train, y_train)

    lgb_model, lgb_seconds, lgb_times = timed_fit(fit_lightgbm, args.repeats)
    xgb_model, xgb_seconds, xgb_times = timed_fit(fit_xgboost, args.repeats)
    result = {
        "matrix_rows": int(len(y)),
        "train_rows": int(train.sum()),
        "test_rows": int(test.sum()),
        "features": features,
        "hyperparameters": {
            "trees": args.trees,
            "max_depth": args.max_depth,
            "learning_rate": args.learning_rate,
            "num_leaves": args.num_leaves,
            "min_data_in_leaf": args.min_data_in_leaf,
            "threads": args.threads,
        },
        "oracle_test_rmse": rmse(oracle[test], y_test),
        "lightgbm": {
            "version": lightgbm.__version__,
            "test_rmse": rmse(lgb_model.predict(x_test), y_test),
            "fit_seconds": lgb_seconds,
            "fit_seconds_each": lgb_times,
        },
        "xgboost_hist": {
            "version": xgboost.__version__,
            "test_rmse": rmse(xgb_model.predict(x_test), y_test),
            "fit_seconds": xgb_seconds,
            "fit_seconds_each": xgb_times,
        },
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()
