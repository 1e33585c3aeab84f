"""Issue 9's first complaint, measured: the estimators' defaults (``deepens train`` uses the same) on a
small real table, scikit-learn's diabetes data (442 rows x 10 features, bundled, no download), over
random 75/25 train/test splits: coverage of the 50/80/90/95% intervals of the calibrated model (the
default, ``calibration="auto"``: split conformal on 20% of the training rows) and of its uncalibrated
mixture, and of a model trained on every training row without calibration (``calibration=None``).

    .venv/bin/python benchmarks/table_coverage.py [SPLITS]     # default 10 splits
"""

import sys
import time

import numpy as np
from sklearn.datasets import load_diabetes

from deepens.sklearn import DeepEnsembleRegressor

LEVELS = (0.5, 0.8, 0.9, 0.95)


def main(splits: int = 10) -> None:
    x, y = load_diabetes(return_X_y=True)
    rows = {"calibrated": [], "its mixture": [], "calibration=None": []}
    start = time.perf_counter()
    for split in range(splits):
        order = np.random.default_rng([7, split]).permutation(len(x))
        test, train = order[: len(x) // 4], order[len(x) // 4 :]
        model = DeepEnsembleRegressor(random_state=split).fit(x[train], y[train])
        scores = model.evaluate(x[test], y[test], levels=LEVELS)
        rows["calibrated"].append([scores[f"coverage_{v:g}"] for v in LEVELS])
        rows["its mixture"].append([scores[f"coverage_{v:g}_uncalibrated"] for v in LEVELS])
        plain = DeepEnsembleRegressor(random_state=split, calibration=None).fit(x[train], y[train])
        rows["calibration=None"].append(
            [plain.evaluate(x[test], y[test], levels=LEVELS)[f"coverage_{v:g}"] for v in LEVELS]
        )
        print(
            f"split {split}: 90% coverage calibrated {rows['calibrated'][-1][2]:.3f}, mixture "
            f"{rows['its mixture'][-1][2]:.3f}, calibration=None {rows['calibration=None'][-1][2]:.3f}",
            flush=True,
        )
    print(
        f"\nmean coverage over {splits} splits of {len(x)} rows (test {len(x) // 4} rows each), "
        f"{time.perf_counter() - start:.0f} s"
    )
    print("model               " + "  ".join(f"{100 * v:>5g}%" for v in LEVELS))
    for name, values in rows.items():
        mean = np.mean(values, axis=0)
        print(f"{name:<20}" + "  ".join(f"{m:6.3f}" for m in mean))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
