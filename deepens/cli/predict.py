"""``deepens predict`` and ``deepens evaluate``: a saved model on a table."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepens.cli.common import CommandError, _common_table_options, _level, _percent, _say


def _load_model(path: str | Path) -> tuple[Any, dict[str, Any]]:
    import deepens
    from deepens import io
    from deepens.sklearn import DeepEnsembleBase

    model = deepens.load(path)
    if not isinstance(model, DeepEnsembleBase):
        raise CommandError(
            f"{path} holds a bare Ensemble; the command line needs a model made by `deepens train` or a "
            "fitted DeepEnsembleRegressor/DeepEnsembleClassifier (they keep the preprocessing)"
        )
    return model, io.read_metadata(path)


def _model_inputs(
    model: Any,
    metadata: dict[str, Any],
    frame: Any,
    args: argparse.Namespace,
    source: str,
    also_check: Sequence[str] = (),
) -> tuple[Any, Any]:
    """The rows and feature columns of ``frame`` that ``model`` predicts from, checked: ``(frame, x)``."""
    from deepens import tables

    if args.id:
        tables.require_columns(frame, [args.id], "--id", source)
    tables.require_columns(frame, args.drop, "--drop", source)
    if hasattr(model, "feature_names_in_"):
        names = [str(c) for c in model.feature_names_in_]
        tables.require_columns(frame, names, "feature", source)
        tables.numeric_columns(frame, names, source)
    else:
        exclude = [metadata.get("target"), args.id, *args.drop]
        names = tables.feature_columns(frame, [c for c in exclude if c], source)
        if len(names) != model.n_features_in_:
            raise CommandError(
                f"{source} has {len(names)} feature columns but the model was trained on {model.n_features_in_}"
            )
    frame, dropped = tables.drop_unusable(frame, [*names, *also_check], args.drop_missing, source)
    if dropped:
        _say(f"dropped {dropped} row{'s' if dropped > 1 else ''} with missing or infinite values (--drop-missing)")
    return frame, tables.features(frame, names)


def _check_known_classes(model: Any, frame: Any, target: str | None, source: str) -> None:
    """A CommandError naming the labels in column ``target`` (when present) that the model never saw."""
    import numpy as np

    from deepens import tables

    if not target or target not in frame.columns or not hasattr(model, "classes_"):
        return
    column = frame[target]
    present = np.flatnonzero(column.notna().to_numpy())
    values = _as_model_labels(model, tables.labels(column.iloc[present]))
    unseen = ~np.isin(values, model.classes_)
    if unseen.any():
        names = ", ".join(repr(v) for v in dict.fromkeys(values[unseen].tolist()))
        raise CommandError(
            f"{source}: column {target!r} has classes the model never saw in training: {names} in "
            f"{tables.describe_rows(present[unseen])}; it knows {model.classes_.tolist()}"
        )


def _as_model_labels(model: Any, values: Any) -> Any:
    """Labels read from a table, converted to the dtype of the model's classes (a CSV may read 1 as 1.0)."""
    import numpy as np

    kind = model.classes_.dtype.kind
    if kind in "iub" and np.asarray(values).dtype.kind == "f":
        values = np.asarray(values)
        if np.all(values == np.round(values)):
            return values.astype(model.classes_.dtype)
    if kind in "UO":
        return np.asarray([str(v) for v in values], dtype=object)
    return np.asarray(values)


def prediction_table(model: Any, x: Any, level: float) -> Any:
    """The columns ``predict`` writes: regression ``mean, std, lower_P, upper_P, aleatoric_std,
    epistemic_std`` (P the level in percent); classification ``prob_<class>`` for each class,
    ``predicted``, ``entropy`` and ``knowledge`` (nats). One pass of the members over ``x``."""
    import pandas as pd

    if hasattr(model, "classes_"):
        d = model.describe(x)
        table = {f"prob_{c}": d["probs"][:, k] for k, c in enumerate(model.classes_)}
        table.update(predicted=d["predicted"], entropy=d["entropy"], knowledge=d["knowledge"])
        return pd.DataFrame(table)
    d = model.describe(x, level)
    p = _percent(level)
    return pd.DataFrame(
        {
            "mean": d["mean"],
            "std": d["std"],
            f"lower_{p}": d["lower"],
            f"upper_{p}": d["upper"],
            "aleatoric_std": d["aleatoric_std"],
            "epistemic_std": d["epistemic_std"],
        }
    )


def _predict(args: argparse.Namespace) -> int:
    from deepens import tables

    model, metadata = _load_model(args.model)
    source = str(args.data)
    frame = tables.read_table(args.data)
    out = Path(args.output)
    if out.suffix.lower() not in tables.READERS:
        raise CommandError(f"{out}: the output must end in .csv or .parquet")
    tables.check_output_path(out, [args.data, args.model])  # the same file by any name, link or hard link
    if Path(args.model).resolve() in out.resolve().parents:
        raise CommandError(f"refusing to write -o {out} inside the model folder {args.model}")
    frame, x = _model_inputs(model, metadata, frame, args, source)
    _check_known_classes(model, frame, metadata.get("target"), source)
    table = prediction_table(model, x, args.level)
    if args.id:
        table.insert(0, args.id, frame[args.id].to_numpy())
    tables.write_table(table, out)
    print(f"wrote {len(table)} rows x {table.shape[1]} columns to {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.shift:  # an image classifier under dataset shift: deepens.cli.shift
        from deepens.cli.shift import evaluate_shift

        return evaluate_shift(args)
    import json

    import numpy as np

    from deepens import io, metrics, plots, tables

    model, metadata = _load_model(args.model)
    source = str(args.data)
    target = args.target or metadata.get("target")
    if not target:
        raise CommandError("the model does not record its target column: name it with --target")
    frame = tables.read_table(args.data)
    tables.require_columns(frame, [target], "target", source)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CommandError(f"--out {args.out} is a file, not a folder")
    frame, x = _model_inputs(model, metadata, frame, args, source, also_check=[target])
    classifier = hasattr(model, "classes_")
    title = f"{Path(args.model).name} on {Path(source).name}"
    if classifier:
        _check_known_classes(model, frame, target, source)
        labels = _as_model_labels(model, tables.labels(frame[target]))
        summary = model.evaluate(x, labels, bins=args.bins)
        index, described = model.encode_labels(labels), model.describe(x)
        curves = {"calibrated" if model.calibration_ is not None else "model": described["probs"]}
        if model.calibration_ is not None:
            curves["uncalibrated"] = described["probs_uncalibrated"]
        figure = plots.reliability_comparison_figure(
            {name: metrics.reliability_diagram(index, p, bins=args.bins) for name, p in curves.items()}, title=title
        )
        shown = ("accuracy", "nll", "brier_per_class", "brier_summed", "ece", "mce")
    else:
        y = tables.regression_target(frame[target], source)
        levels = tuple(sorted({0.5, 0.8, 0.9, 0.95, round(args.level, 6)}))
        grid = tuple(round(v, 2) for v in np.arange(0.05, 0.96, 0.05))
        # One pass of the members scores the headline levels and the figure's grid; the table keeps the former.
        scores = model.evaluate(x, y, levels=tuple(sorted({*levels, *grid})))
        figure = plots.coverage_figure(grid, scores, title=title)
        grid_only = {f"coverage_{v:g}{s}" for v in set(grid) - set(levels) for s in ("", "_uncalibrated")}
        summary = {k: v for k, v in scores.items() if k not in grid_only}
        shown = (
            "rmse",
            "nll",
            "nll_mixture",
            "crps",
            "mae",
            *(f"coverage_{v:g}" for v in levels),
            "miscalibration_area",
        )
    _print_metrics(summary, shown, f"{len(x)} rows of {source}, target {target!r}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        record = {
            "model": str(args.model),
            "data": source,
            "target": target,
            "rows": len(x),
            "task": "classification" if classifier else "regression",
            "metrics": {k: (None if not np.isfinite(v) else v) for k, v in summary.items()},
        }
        io.atomic_file(out / "metrics.json", lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
        io.atomic_file(out / "calibration.png", lambda p: figure.savefig(p, format="png", dpi=110, bbox_inches="tight"))
        print(f"wrote {out / 'metrics.json'} and {out / 'calibration.png'}")
    return 0


def _print_metrics(summary: dict[str, float], shown: Sequence[str], caption: str) -> None:
    """The metrics as a table on stdout: the headline ones first, then the rest; a calibrated model's
    scores beside those of its uncalibrated mixture."""
    from rich.console import Console
    from rich.table import Table

    suffix = "_uncalibrated"
    calibrated = any(k.endswith(suffix) for k in summary)
    table = Table(title="deepens evaluate", caption=caption)
    table.add_column("metric")
    table.add_column("calibrated" if calibrated else "value", justify="right")
    if calibrated:
        table.add_column("uncalibrated", justify="right")
    plain = [k for k in summary if not k.endswith(suffix)]
    for key in [*(k for k in shown if k in summary), *(k for k in plain if k not in shown)]:
        cells = [f"{summary[key]:.4f}"]
        if calibrated:
            other = summary.get(key + suffix)
            cells.append("" if other is None else f"{other:.4f}")
        table.add_row(key, *cells)
    Console(width=100).print(table)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the command(s) of this module to the ``deepens`` parser."""
    predict = commands.add_parser(
        "predict",
        help="predict with a saved model, writing a CSV or Parquet table",
        description="Regression writes mean, std, lower_P and upper_P (the central --level interval), aleatoric_std "
        "and epistemic_std; classification writes prob_<class> for each class, predicted, entropy and knowledge "
        "(nats). Rows keep their order (rows skipped by --drop-missing are left out; use --id to match them).",
    )
    predict.add_argument("model", metavar="MODEL_DIR")
    predict.add_argument("data", metavar="DATA", help="a .csv or .parquet file with the model's feature columns")
    predict.add_argument("-o", "--output", required=True, metavar="OUT", help="a .csv or .parquet file to write")
    predict.add_argument("--level", type=_level, default=0.9, help="probability of the interval (default: 0.9)")
    _common_table_options(predict)
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a saved model on a table holding the target: metrics table and calibration figure",
        description="Scores of what the model predicts; a calibrated model's (see deepens train --calibration) "
        "beside its uncalibrated mixture's: interval coverage at 50/80/90/95% (regression), ECE before and "
        "after the temperature (classification), and both calibration curves in calibration.png.",
    )
    evaluate.add_argument("model", metavar="MODEL_DIR")
    evaluate.add_argument("data", metavar="DATA", help="a .csv or .parquet file with the features and the target")
    evaluate.add_argument("--out", metavar="DIR", help="write metrics.json and calibration.png here")
    evaluate.add_argument("--target", metavar="COLUMN", help="the target column (default: the one trained on)")
    evaluate.add_argument(
        "--level",
        type=_level,
        default=0.9,
        help="regression: an extra central-interval level for coverage (0.5, 0.8, 0.9 and 0.95 always)",
    )
    evaluate.add_argument("--bins", type=int, default=15, help="classification: calibration bins (default: 15)")
    evaluate.add_argument(
        "--shift",
        choices=("rotate", "translate", "corrupt"),
        help="score an image classifier (a saved Ensemble or classifier; DATA an .npz of images and "
        "labels, or a table of pixel columns in [0, 1]) under rotations 0-180 degrees, "
        "translations 0-14 pixels or every corruption at intensities 1-5",
    )
    _common_table_options(evaluate)
    evaluate.set_defaults(run=_evaluate)
