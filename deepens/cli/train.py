"""``deepens train``: fit an estimator on a CSV or Parquet table and save it with its preprocessing."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from deepens.cli.common import (
    CommandError,
    _clip_norm,
    _common_table_options,
    _device_options,
    _say,
    checkpoint_dir_for,
)

if TYPE_CHECKING:
    import pandas as pd


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def _train(args: argparse.Namespace) -> int:
    import jax

    from deepens import io, tables
    from deepens.config import TrainConfig
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
    if args.checkpoint_dir or args.checkpoint_every is not None or args.resume:
        _check_checkpoint_dir(Path(args.checkpoint_dir) if args.checkpoint_dir else checkpoint_dir_for(out), out)

    if args.task:
        task, reason = args.task, "as given by --task"
    else:
        task, reason = tables.infer_task(cast("pd.Series", frame[args.target]))
        reason += "; override with --task"
    frame, dropped = tables.drop_unusable(frame, [*feature_names, args.target], args.drop_missing, source)
    x = tables.features(frame, feature_names)
    # The training flags are named after TrainConfig's fields (the seed becomes random_state).
    settings: dict[str, Any] = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name != "seed"
    }
    settings.update(
        hidden_layer_sizes=tuple(args.hidden),
        activation=args.activation,
        random_state=args.seed,
        calibration=None if args.calibration == "none" else args.calibration,
        calibration_fraction=args.calibration_fraction,
        early_stopping=args.early_stopping,
        patience=args.patience,
        devices=args.devices,
        verbose=not args.quiet,
    )
    if task == "regression":
        if args.loss == "brier":
            raise CommandError("--loss brier is for classification; regression trains on nll (default) or beta_nll")
        if args.calibration == "temperature":
            raise CommandError("--calibration temperature is for classification; regression takes conformal or scale")
        y = tables.regression_target(cast("pd.Series", frame[args.target]), source)
        estimator: Any = DeepEnsembleRegressor(head=args.head, loss=args.loss, **settings)
    else:
        if args.head != "gaussian":
            raise CommandError("--head is for regression; classification always uses a softmax head")
        if args.loss == "beta_nll":
            raise CommandError("--loss beta_nll is for regression (a Gaussian head); classification takes nll or brier")
        if args.calibration in ("conformal", "scale"):
            raise CommandError(f"--calibration {args.calibration} is for regression; classification takes temperature")
        y = tables.labels(cast("pd.Series", frame[args.target]))
        estimator = DeepEnsembleClassifier(loss=args.loss, **settings)
    estimator._check_params()  # bad settings fail here, before any note is printed
    # All input is checked: from here on, notes and the progress bar.
    _say(f"task: {task} ({reason})")
    if dropped:
        _say(f"dropped {dropped} row{'s' if dropped > 1 else ''} with missing or infinite values (--drop-missing)")
    _say(
        f"training {args.members} members on {len(x)} rows x {len(feature_names)} features "
        f"({', '.join(feature_names[:8])}{' ...' if len(feature_names) > 8 else ''})"
    )
    if args.calibration != "none":
        _say(
            f"calibration: {args.calibration} on a held-out {args.calibration_fraction:g} of the rows "
            "('auto' skips it below 50 rows; --calibration none trains on every row)"
        )

    checkpoints = Path(args.checkpoint_dir) if args.checkpoint_dir else checkpoint_dir_for(out)
    resumed = None
    if args.resume:
        latest = io.latest_checkpoint(checkpoints)
        resumed = latest.name if latest else None
        _say(f"resuming from {latest}" if latest else f"no checkpoint in {checkpoints}: starting from epoch 0")
    use_checkpoints = args.checkpoint_every is not None or args.resume
    start = time.perf_counter()
    estimator.fit(
        x,
        y,
        checkpoint_dir=checkpoints if use_checkpoints else None,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
    )
    seconds = time.perf_counter() - start
    metadata = {
        "target": args.target,
        "task": task,
        "id": args.id,
        "features": feature_names,
        "dropped_columns": list(args.drop),
        "training_rows": len(x),
        "resumed_from": resumed,
    }
    estimator.save(out, metadata=metadata)
    if use_checkpoints and jax.process_index() == 0:
        io.remove_checkpoints(checkpoints)  # the model is safely saved; they are spent
    timings = estimator.ensemble_.timings
    detail = f" (compiling {timings.compile_s:.1f} s)" if timings is not None else ""
    print(f"trained {task} ensemble of {args.members} on {len(x)} rows in {seconds:.1f} s{detail}; saved to {out}")
    return 0


def _check_checkpoint_dir(checkpoints: Path, out: Path) -> None:
    """Refuse, before training, a ``--checkpoint-dir`` that is a file, or that is the model folder or
    holds it or lies inside it: saving the model would replace the checkpoints, and removing the spent
    checkpoints would remove the model."""
    if checkpoints.exists() and not checkpoints.is_dir():
        raise CommandError(f"--checkpoint-dir {checkpoints} is a file, not a folder")
    a, b = checkpoints.resolve(), out.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise CommandError(
            f"--checkpoint-dir {checkpoints} must lie apart from the model folder -o {out} (not the "
            "same folder, nor one inside the other): the spent checkpoints are removed after saving"
        )
    from deepens import io

    io.check_checkpoint_dir(checkpoints, model=out)  # also refuses a folder holding a saved model


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the command(s) of this module to the ``deepens`` parser (defaults: :data:`deepens.config.DEFAULTS`)."""
    from deepens.config import DEFAULTS as D  # jax-free: --help does not start JAX
    from deepens.config import METHOD_NAMES

    train = commands.add_parser(
        "train",
        help="train an ensemble on a CSV or Parquet table and save it to a folder",
        description="Train a deep ensemble on the numeric columns of DATA (CSV or Parquet) to predict --target.",
    )
    train.add_argument("data", metavar="DATA", help="a .csv or .parquet file")
    train.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    train.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="folder to save the model to")
    train.add_argument(
        "--task",
        choices=("regression", "classification"),
        help="default: inferred from the target (text, booleans or few whole numbers: classification)",
    )
    train.add_argument("--members", type=int, default=D.members, help=f"ensemble members (default: {D.members})")
    train.add_argument(
        "--hidden", type=int, nargs="+", default=[50], metavar="WIDTH", help="hidden layer widths (default: 50)"
    )
    train.add_argument("--activation", default="relu", help="relu, tanh, gelu, silu, elu or sigmoid (default: relu)")
    train.add_argument(
        "--head",
        choices=("gaussian", "laplace", "student_t"),
        default="gaussian",
        help="regression: the members' distribution (default: gaussian)",
    )
    train.add_argument(
        "--loss",
        choices=("nll", "brier", "beta_nll"),
        help="nll (default); brier (classification); beta_nll (regression, Gaussian head: the NLL "
        "weighted by sigma^(2 beta), beta = 0.5, Seitzer et al. 2022)",
    )
    train.add_argument(
        "--adversarial", choices=("none", "fgsm", "vat"), default="none", help="adversarial training (default: none)"
    )
    train.add_argument(
        "--eps", type=float, help="adversarial step as a fraction of each feature's range (default: 0.01)"
    )
    train.add_argument("--epochs", type=int, default=D.epochs, help=f"passes over the data (default: {D.epochs})")
    train.add_argument("--batch-size", type=int, default=D.batch_size, help=f"minibatch size (default: {D.batch_size})")
    train.add_argument(
        "--learning-rate",
        type=float,
        default=D.learning_rate,
        help=f"Adam's learning rate (default: {D.learning_rate:g})",
    )
    train.add_argument(
        "--weight-decay",
        type=float,
        default=D.weight_decay,
        help="L2 weight decay added to the gradient before Adam (default: 0)",
    )
    train.add_argument(
        "--clip-norm",
        type=_clip_norm,
        default=D.clip_norm,
        metavar="NORM",
        help="clip gradients to this global norm: a number, 'none' or 'auto' (default: 1.0 for "
        "gaussian/laplace heads, none otherwise)",
    )
    train.add_argument(
        "--method",
        choices=sorted(METHOD_NAMES),
        default=D.method,
        help="ensemble: independent networks (default); mimo or batchensemble: all members in one "
        "network, at about one network's cost",
    )
    train.add_argument(
        "--input-repetition",
        type=float,
        default=D.input_repetition,
        help="mimo: probability that all members see the same input row (default: 0)",
    )
    train.add_argument(
        "--batch-repetition",
        type=int,
        default=D.batch_repetition,
        help="mimo: times each row is repeated in a batch (default: 1)",
    )
    train.add_argument(
        "--calibration",
        choices=("auto", "none", "conformal", "scale", "temperature"),
        default="auto",
        help="fit on held-out rows: conformal intervals or one std factor (regression), a temperature "
        "(classification); auto (default): conformal or temperature, skipped below 50 rows",
    )
    train.add_argument(
        "--calibration-fraction",
        type=_fraction,
        default=0.2,
        metavar="F",
        help="share of the rows held out for calibration (default: 0.2)",
    )
    train.add_argument(
        "--early-stopping",
        action="store_true",
        help="stop on the calibration rows' NLL, each member keeping its best epoch (needs calibration)",
    )
    train.add_argument(
        "--patience",
        type=int,
        default=10,
        metavar="EPOCHS",
        help="--early-stopping: epochs without improvement before stopping (default: 10)",
    )
    train.add_argument("--seed", type=int, default=D.seed, help="random seed (default: 0)")
    train.add_argument("--checkpoint-every", type=int, metavar="N", help="save a checkpoint every N epochs")
    train.add_argument("--checkpoint-dir", metavar="DIR", help="where checkpoints go (default: MODEL_DIR.checkpoints)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint (same data and settings) to the same result",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _common_table_options(train)
    _device_options(train)
    train.set_defaults(run=_train)
