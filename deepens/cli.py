"""The ``deepens`` command line: ``demo``, ``bench``, ``reproduce``, and ``train`` / ``predict`` / ``evaluate`` on
CSV and Parquet tables.

Bad input (a missing file or column, non-numeric values, missing values, a class or a feature count
the model never saw) ends the command with one line on stderr and exit code 2, before anything is
written: models and tables are written atomically (see :mod:`deepens.io` and :mod:`deepens.tables`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

EXIT_BAD_INPUT = 2


class CommandError(ValueError):
    """Bad input found by a command; printed as one line."""


def _say(message: str) -> None:
    """Progress notes go to stderr, so stdout stays clean for results."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# demo


def _demo(args: argparse.Namespace) -> int:
    from deepens.experiments import demo

    demo.run(args.out, demo.Settings(seed=args.seed))
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json

    from deepens.experiments import bench

    record = bench.run(args.workload, args.members, sequential=not args.no_sequential)
    text = json.dumps(record, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


# --------------------------------------------------------------------------------------------------
# train


def _clip_norm(text: str) -> float | str | None:
    """``--clip-norm``: a positive number, ``none`` (off) or ``auto``."""
    if text.lower() in ("none", "auto"):
        return None if text.lower() == "none" else "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, 'none' or 'auto', got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def checkpoint_dir_for(model_dir: str | Path) -> Path:
    """Where ``train`` keeps checkpoints by default: next to the model folder, ``MODEL_DIR.checkpoints``."""
    model_dir = Path(model_dir)
    return model_dir.parent / f"{model_dir.name}.checkpoints"


def _train(args: argparse.Namespace) -> int:
    import jax

    from deepens import io, tables
    from deepens.sklearn import DeepEnsembleClassifier, DeepEnsembleRegressor

    source = str(args.data)
    frame = tables.read_table(args.data)
    tables.require_columns(frame, [args.target], "target", source)
    tables.require_columns(frame, args.drop, "--drop", source)
    if args.id:
        tables.require_columns(frame, [args.id], "--id", source)
    if args.target in args.drop or args.target == args.id:
        raise CommandError(f"the target {args.target!r} cannot also be dropped or be the id column")
    feature_names = tables.feature_columns(frame, [args.target, *args.drop, *([args.id] if args.id else [])], source)
    out = Path(args.output)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or io.is_saved_object(out))):
        raise CommandError(f"refusing to overwrite {out}: it exists and is not a saved deepens model")

    if args.task:
        task, reason = args.task, "as given by --task"
    else:
        task, reason = tables.infer_task(frame[args.target])
        reason += "; override with --task"
    frame, dropped = tables.drop_unusable(frame, [*feature_names, args.target], args.drop_missing, source)
    x = tables.features(frame, feature_names)
    settings = dict(
        members=args.members, hidden_layer_sizes=tuple(args.hidden), activation=args.activation,
        adversarial=args.adversarial, eps=args.eps, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, clip_norm=args.clip_norm,
        random_state=args.seed,
        devices=args.devices, verbose=not args.quiet,
    )
    if task == "regression":
        if args.loss not in (None, "nll"):
            raise CommandError(f"--loss {args.loss} is for classification; regression heads train on their NLL")
        y = tables.regression_target(frame[args.target], source)
        estimator: Any = DeepEnsembleRegressor(head=args.head, **settings)
    else:
        if args.head != "gaussian":
            raise CommandError("--head is for regression; classification always uses a softmax head")
        y = tables.labels(frame[args.target])
        estimator = DeepEnsembleClassifier(loss=args.loss, **settings)
    estimator._check_params()  # bad settings fail here, before any note is printed
    # All input is checked: from here on, notes and the progress bar.
    _say(f"task: {task} ({reason})")
    if dropped:
        _say(f"dropped {dropped} row{'s' if dropped > 1 else ''} with missing or infinite values (--drop-missing)")
    _say(f"training {args.members} members on {len(x)} rows x {len(feature_names)} features "
         f"({', '.join(feature_names[:8])}{' ...' if len(feature_names) > 8 else ''})")

    checkpoints = Path(args.checkpoint_dir) if args.checkpoint_dir else checkpoint_dir_for(out)
    resumed = None
    if args.resume:
        latest = io.latest_checkpoint(checkpoints)
        resumed = latest.name if latest else None
        _say(f"resuming from {latest}" if latest else f"no checkpoint in {checkpoints}: starting from epoch 0")
    use_checkpoints = args.checkpoint_every is not None or args.resume
    start = time.perf_counter()
    estimator.fit(
        x, y,
        checkpoint_dir=checkpoints if use_checkpoints else None,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
    )
    seconds = time.perf_counter() - start
    metadata = {"target": args.target, "task": task, "id": args.id, "features": feature_names,
                "dropped_columns": list(args.drop), "training_rows": len(x), "resumed_from": resumed}
    estimator.save(out, metadata=metadata)
    if use_checkpoints and jax.process_index() == 0:
        io.remove_checkpoints(checkpoints)  # the model is safely saved; they are spent
    timings = estimator.ensemble_.timings
    detail = f" (compiling {timings.compile_s:.1f} s)" if timings is not None else ""
    print(f"trained {task} ensemble of {args.members} on {len(x)} rows in {seconds:.1f} s{detail}; saved to {out}")
    return 0


# --------------------------------------------------------------------------------------------------
# predict and evaluate: a saved model and a table.


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


def _model_inputs(model: Any, metadata: dict[str, Any], frame: Any, args: argparse.Namespace, source: str,
                  also_check: Sequence[str] = ()) -> tuple[Any, Any]:
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


def _level(value: str) -> float:
    level = float(value)
    if not 0.0 < level < 1.0:
        raise argparse.ArgumentTypeError(f"level must be strictly between 0 and 1, got {value}")
    return level


def _percent(level: float) -> str:
    return f"{100 * level:g}"


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
    return pd.DataFrame({"mean": d["mean"], "std": d["std"], f"lower_{p}": d["lower"], f"upper_{p}": d["upper"],
                         "aleatoric_std": d["aleatoric_std"], "epistemic_std": d["epistemic_std"]})


def _predict(args: argparse.Namespace) -> int:
    from deepens import tables

    model, metadata = _load_model(args.model)
    source = str(args.data)
    frame = tables.read_table(args.data)
    out = Path(args.output)
    if out.suffix.lower() not in tables.READERS:
        raise CommandError(f"{out}: the output must end in .csv or .parquet")
    frame, x = _model_inputs(model, metadata, frame, args, source)
    _check_known_classes(model, frame, metadata.get("target"), source)
    table = prediction_table(model, x, args.level)
    if args.id:
        table.insert(0, args.id, frame[args.id].to_numpy())
    tables.write_table(table, out)
    print(f"wrote {len(table)} rows x {table.shape[1]} columns to {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
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
    if classifier:
        _check_known_classes(model, frame, target, source)
        labels = _as_model_labels(model, tables.labels(frame[target]))
        summary = model.evaluate(x, labels, bins=args.bins)
        figure = plots.reliability_figure(
            metrics.reliability_diagram(model.encode_labels(labels), model.predict_proba(x), bins=args.bins),
            title=f"{Path(args.model).name} on {Path(source).name}",
        )
        shown = ("accuracy", "nll", "brier_per_class", "brier_summed", "ece", "mce")
    else:
        y = tables.regression_target(frame[target], source)
        levels = tuple(sorted({0.5, 0.95, round(args.level, 6)}))
        summary = model.evaluate(x, y, levels=levels)
        figure = plots.regression_calibration_figure(model.predict_cdf(x, y),
                                                     title=f"{Path(args.model).name} on {Path(source).name}")
        shown = ("rmse", "nll", "nll_mixture", "crps", "mae", *(f"coverage_{v:g}" for v in levels),
                 "miscalibration_area")
    _print_metrics(summary, shown, f"{len(x)} rows of {source}, target {target!r}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        record = {"model": str(args.model), "data": source, "target": target, "rows": len(x),
                  "task": "classification" if classifier else "regression",
                  "metrics": {k: (None if not np.isfinite(v) else v) for k, v in summary.items()}}
        io.atomic_file(out / "metrics.json", lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
        io.atomic_file(out / "calibration.png", lambda p: figure.savefig(p, format="png", dpi=110, bbox_inches="tight"))
        print(f"wrote {out / 'metrics.json'} and {out / 'calibration.png'}")
    return 0


def _print_metrics(summary: dict[str, float], shown: Sequence[str], caption: str) -> None:
    """The metrics as a table on stdout: the headline ones first, then the rest."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="deepens evaluate", caption=caption)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in [*shown, *(k for k in summary if k not in shown)]:
        if key in summary:
            table.add_row(key, f"{summary[key]:.4f}")
    Console(width=100).print(table)


# --------------------------------------------------------------------------------------------------
# The parser.


def _common_table_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id", help="a column copied to the output and never used as a feature")
    parser.add_argument("--drop", nargs="+", default=[], metavar="COLUMN", help="columns to ignore")
    parser.add_argument("--drop-missing", action="store_true",
                        help="skip rows with missing or infinite values (default: refuse them, naming the rows)")


def _names(text: str | None) -> tuple[str, ...] | None:
    return tuple(name.strip() for name in text.split(",") if name.strip()) if text else None


def _uci_settings(args: argparse.Namespace, *, members: int | None, epochs: int | None):
    from deepens.experiments import uci

    optimizer = None
    if args.learning_rate is not None:
        optimizer = uci.OptimizerConfig(args.learning_rate, args.schedule, args.weight_decay)
    elif args.schedule != "constant" or args.weight_decay:
        raise SystemExit("--schedule and --weight-decay need --learning-rate (without it the optimiser is "
                         "chosen per data set on a validation split)")
    fields = dict(data_dir=args.data_dir, datasets=_names(args.datasets), splits=args.splits, optimizer=optimizer,
                  seed=args.seed, devices=args.devices)
    if members is not None:
        fields["members"] = members
    if epochs is not None:
        fields["epochs"] = epochs
    return uci.Settings(**fields)


def _mnist_settings(args: argparse.Namespace, *, members: int | None, epochs: int | None):
    from deepens.experiments import mnist

    fields = dict(data_dir=args.data_dir, train_limit=args.train_limit, test_limit=args.test_limit, seed=args.seed,
                  devices=args.devices)
    if members is not None:
        fields["members"] = members
    if epochs is not None:
        fields["epochs"] = epochs
    if getattr(args, "mnist_learning_rate", None) is not None:
        fields["learning_rate"] = args.mnist_learning_rate
    return mnist.Settings(**fields)


def _reproduce(args: argparse.Namespace) -> int:
    from deepens.experiments import mnist, report, uci

    if args.benchmark == "uci":
        result = uci.run(args.out, _uci_settings(args, members=args.members, epochs=args.epochs))
        report.write(args.out, result, None)
    elif args.benchmark == "mnist":
        result = mnist.run(args.out, _mnist_settings(args, members=args.members, epochs=args.epochs))
        report.write(args.out, None, result)
    elif args.benchmark == "shift":
        from deepens.experiments import shift

        base = _mnist_settings(args, members=args.members or shift.Settings.members, epochs=args.epochs)
        shift.run(args.out, shift.Settings(**{f: getattr(base, f) for f in base.__dataclass_fields__}))
        print(f"dataset shift: {args.out}/shift.md")
        return 0
    else:
        report.run(args.out, _uci_settings(args, members=args.uci_members, epochs=args.uci_epochs),
                   _mnist_settings(args, members=args.mnist_members, epochs=args.mnist_epochs))
    print(f"report: {args.out}/report.md")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepens", description="Deep Ensembles in JAX: predictive uncertainty.")
    parser.add_argument("--no-cache", action="store_true",
                        help="do not use the persistent compilation cache (also DEEPENS_NO_CACHE=1; "
                             "DEEPENS_CACHE_DIR moves it, default ~/.cache/deepens/jax)")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the practical's toy experiments and write figures and metrics.json")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(run=_demo)

    bench = commands.add_parser("bench", help="measure training speed on a standard workload")
    bench.add_argument("--workload", choices=("w1", "w2", "w3"), required=True,
                       help="w1 toy regression, w2 40,000 x 9 regression, w3 10,000 x 784 ten-class")
    bench.add_argument("--members", type=int, help="ensemble size (default: the workload's)")
    bench.add_argument("--json", help="also write the record to this file")
    bench.add_argument("--no-sequential", action="store_true", help="skip the sequential baselines")
    bench.set_defaults(run=_bench)

    train = commands.add_parser(
        "train", help="train an ensemble on a CSV or Parquet table and save it to a folder",
        description="Train a deep ensemble on the numeric columns of DATA (CSV or Parquet) to predict --target.",
    )
    train.add_argument("data", metavar="DATA", help="a .csv or .parquet file")
    train.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    train.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="folder to save the model to")
    train.add_argument("--task", choices=("regression", "classification"),
                       help="default: inferred from the target (text, booleans or few whole numbers: classification)")
    train.add_argument("--members", type=int, default=5, help="networks in the ensemble (default: 5)")
    train.add_argument("--hidden", type=int, nargs="+", default=[50], metavar="WIDTH",
                       help="hidden layer widths (default: 50)")
    train.add_argument("--activation", default="relu", help="relu, tanh, gelu, silu, elu or sigmoid (default: relu)")
    train.add_argument("--head", choices=("gaussian", "laplace", "student_t"), default="gaussian",
                       help="regression: the members' distribution (default: gaussian)")
    train.add_argument("--loss", choices=("nll", "brier"), help="classification: nll (default) or brier")
    train.add_argument("--adversarial", choices=("none", "fgsm", "vat"), default="none",
                       help="adversarial training (default: none)")
    train.add_argument("--eps", type=float, help="adversarial step as a fraction of each feature's range (default: 0.01)")
    train.add_argument("--epochs", type=int, default=40, help="passes over the data (default: 40)")
    train.add_argument("--batch-size", type=int, default=100, help="minibatch size (default: 100)")
    train.add_argument("--learning-rate", type=float, default=0.01, help="Adam's learning rate (default: 0.01)")
    train.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay (default: 0)")
    train.add_argument("--clip-norm", type=_clip_norm, default="auto", metavar="NORM",
                       help="clip gradients to this global norm: a number, 'none' or 'auto' (default: 1.0 for "
                            "gaussian/laplace heads, none otherwise)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument("--checkpoint-every", type=int, metavar="N", help="save a checkpoint every N epochs")
    train.add_argument("--checkpoint-dir", metavar="DIR", help="where checkpoints go (default: MODEL_DIR.checkpoints)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint (same data and settings) to the same result")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _common_table_options(train)
    _device_options(train)
    train.set_defaults(run=_train)

    predict = commands.add_parser(
        "predict", help="predict with a saved model, writing a CSV or Parquet table",
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
        "evaluate", help="score a saved model on a table holding the target: metrics table and calibration figure",
    )
    evaluate.add_argument("model", metavar="MODEL_DIR")
    evaluate.add_argument("data", metavar="DATA", help="a .csv or .parquet file with the features and the target")
    evaluate.add_argument("--out", metavar="DIR", help="write metrics.json and calibration.png here")
    evaluate.add_argument("--target", metavar="COLUMN", help="the target column (default: the one trained on)")
    evaluate.add_argument("--level", type=_level, default=0.9,
                          help="regression: an extra central-interval level for coverage (0.5 and 0.95 always)")
    evaluate.add_argument("--bins", type=int, default=15, help="classification: calibration bins (default: 15)")
    _common_table_options(evaluate)
    evaluate.set_defaults(run=_evaluate)

    reproduce = commands.add_parser("reproduce", help="reproduce the paper's benchmarks and write a report")
    benchmarks = reproduce.add_subparsers(dest="benchmark", required=True)
    uci_parser = benchmarks.add_parser("uci", help="UCI regression (Table 1 and supplementary Table 2)")
    mnist_parser = benchmarks.add_parser("mnist", help="MNIST: ensemble size, FGSM, NotMNIST (Figures 2, 3, 6)")
    shift_parser = benchmarks.add_parser(
        "shift", help="MNIST under rotation, translation and corruptions (Ovadia et al. 2019)")
    all_parser = benchmarks.add_parser("all", help="both, and report.md")
    for sub, default_out in ((uci_parser, "results/uci"), (mnist_parser, "results/mnist"),
                             (shift_parser, "results/shift"), (all_parser, "results")):
        sub.add_argument("--out", default=default_out, help=f"output folder (default: {default_out})")
        sub.add_argument("--data-dir", default=None,
                         help="data folder (default: ../shared/data beside the repository, or $DEEPENS_DATA)")
        sub.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        _device_options(sub)
        sub.set_defaults(run=_reproduce)
    for sub in (uci_parser, all_parser):
        sub.add_argument("--datasets", default=None, help="comma-separated data set folder names (default: all)")
        sub.add_argument("--splits", type=_positive, default=None, help="use the first N splits (default: all)")
        sub.add_argument("--learning-rate", type=float, default=None,
                         help="one Adam learning rate for every data set (default: chosen per data set on validation)")
        sub.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                         help="learning-rate schedule with --learning-rate (default: constant)")
        sub.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay with --learning-rate")
    for sub in (mnist_parser, shift_parser, all_parser):
        sub.add_argument("--train-limit", type=_positive, default=None, help="use the first N training images")
        sub.add_argument("--test-limit", type=_positive, default=None, help="use the first N images of each test set")
    for sub, name in ((uci_parser, "uci"), (mnist_parser, "mnist"), (shift_parser, "shift")):
        defaults = {"uci": "5, 40", "mnist": "10, 20", "shift": "5, 20"}[name]
        sub.add_argument("--members", type=_positive, default=None, help=f"ensemble size (default: {defaults.split(',')[0]})")
        sub.add_argument("--epochs", type=_positive, default=None, help=f"epochs (default:{defaults.split(',')[1]})")
    mnist_parser.add_argument("--learning-rate", dest="mnist_learning_rate", type=float, default=None,
                              help="Adam learning rate, cosine-decayed (default: 0.001)")
    all_parser.add_argument("--uci-members", type=_positive, default=None, help="UCI ensemble size (default: 5)")
    all_parser.add_argument("--uci-epochs", type=_positive, default=None, help="UCI epochs (default: 40)")
    all_parser.add_argument("--mnist-members", type=_positive, default=None, help="largest MNIST ensemble (default: 10)")
    all_parser.add_argument("--mnist-epochs", type=_positive, default=None, help="MNIST epochs (default: 20)")
    return parser


def _device_options(parser: argparse.ArgumentParser) -> None:
    """``--devices`` and the multi-host flags, for the commands that train."""
    group = parser.add_argument_group(
        "devices and hosts",
        "Members are split over every device JAX sees (on a CPU, one per core). For a multi-host run start the "
        "same command on every host with the coordinator's address, the number of processes and each one's id "
        "(or set DEEPENS_COORDINATOR / DEEPENS_NUM_PROCESSES / DEEPENS_PROCESS_ID, or JAX's own JAX_* "
        "variables); process 0 writes the outputs.",
    )
    group.add_argument("--devices", type=_positive, metavar="N", help="use the first N devices (default: all)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0 in a multi-host run")
    group.add_argument("--num-processes", type=_positive, metavar="N", help="processes in a multi-host run")
    group.add_argument("--process-id", type=int, metavar="I", help="this process's id, 0 .. N-1")


def _join_hosts(args: argparse.Namespace) -> None:
    """Start the multi-host runtime when asked for (it must come before any JAX computation); processes
    other than 0 then write their outputs to a scratch folder, so exactly one copy lands in the user's."""
    from deepens import devices

    if not hasattr(args, "coordinator"):  # a command that does not train
        return
    if not devices.initialize_distributed(args.coordinator, args.num_processes, args.process_id):
        return
    import jax

    if getattr(args, "output", None) and getattr(args, "checkpoint_dir", "unset") is None:
        # Checkpoints stay where every process can find them on --resume (process 0 writes them).
        args.checkpoint_dir = str(checkpoint_dir_for(args.output))
    if jax.process_index() != 0:
        import tempfile

        scratch = tempfile.mkdtemp(prefix=f"deepens-process{jax.process_index()}-")
        for name in ("output", "out"):
            if getattr(args, name, None):
                setattr(args, name, str(Path(scratch) / Path(getattr(args, name)).name))


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# Commands on the user's own files: bad input there is reported in one line rather than a traceback.
DATA_COMMANDS = ("train", "predict", "evaluate")


def main(argv: Sequence[str] | None = None) -> int:
    from deepens import devices

    devices.use_cpu_cores()  # one JAX device per core, before JAX starts (a no-op once it has)
    args = build_parser().parse_args(argv)
    import os

    from deepens import cache

    if args.no_cache:
        # Through the environment, so the estimators' own call (in fit) sees it too.
        os.environ[cache.NO_CACHE_ENV] = "1"
    elif args.command != "bench":  # bench times compilation itself, so it must not load it from disk
        cache.enable_compilation_cache()
    if args.command not in DATA_COMMANDS:
        _join_hosts(args)
        return args.run(args)
    try:
        _join_hosts(args)
        return args.run(args)
    except (ValueError, OSError) as err:
        # Bad input or an unreadable file: one line, exit code 2; nothing was written (writes are atomic).
        print(f"deepens {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
