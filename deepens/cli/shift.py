"""``deepens evaluate MODEL DATA --shift rotate|translate|corrupt``: a saved image classifier under dataset shift.

The model is a classification :class:`~deepens.Ensemble` saved with ``deepens.save`` (its inputs ``(H, W)``
or ``(H * W,)`` pixels) or a ``DeepEnsembleClassifier`` (from ``deepens train`` on a table of pixel
columns). DATA is an ``.npz`` with ``images`` ``(N, H, W)`` or ``(N, H * W)`` and ``labels`` ``(N,)``, or a
CSV/Parquet table whose target column holds the labels and whose other columns are the pixels, row-major.
Pixels must lie in [0, 1]. Each shift of :mod:`deepens.data.shift` is scored by
:func:`deepens.metrics.shift_curve` (accuracy, NLL, Brier, ECE, confidence, entropy, knowledge).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from deepens.cli.common import CommandError

if TYPE_CHECKING:
    import pandas as pd

KINDS = ("rotate", "translate", "corrupt")


def shifts_for(kind: str) -> list[tuple[str, float | int]]:
    """The shifts of ``kind``: rotations 0..180 degrees by 15, translations 0..14 pixels, or every
    corruption at intensities 1..5 after the clean set (rotation 0)."""
    from deepens.data import shift as shift_data

    if kind == "rotate":
        return [("rotate", float(a)) for a in range(0, 181, 15)]
    if kind == "translate":
        return [("translate", float(p)) for p in range(15)]
    if kind == "corrupt":
        return [("rotate", 0.0)] + [(name, i) for name in shift_data.CORRUPTIONS for i in range(1, 6)]
    raise CommandError(f"--shift must be one of {', '.join(KINDS)}, got {kind!r}")


def read_images(path: str | Path, target: str | None) -> tuple[Any, Any]:
    """``(images (N, D) float32 in [0, 1], labels (N,))`` from an ``.npz`` or a table of pixel columns."""
    import numpy as np

    from deepens import tables

    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as saved:
            names = set(saved.files)
            if not {"images", "labels"} <= names:
                raise CommandError(
                    f"{path}: an .npz for --shift needs arrays 'images' and 'labels', has {sorted(names)}"
                )
            images, labels = np.asarray(saved["images"]), np.asarray(saved["labels"])
        images = images.reshape(len(images), -1)
    else:
        if not target:
            raise CommandError("name the label column with --target (the model does not record one)")
        frame = tables.read_table(path)
        tables.require_columns(frame, [target], "target", str(path))
        pixels = tables.feature_columns(frame, [target], str(path))
        images, labels = tables.features(frame, pixels).to_numpy(), tables.labels(cast("pd.Series", frame[target]))
    if len(images) != len(labels) or len(images) == 0:
        raise CommandError(f"{path}: {len(images)} images but {len(labels)} labels")
    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
        raise CommandError(
            f"{path}: --shift needs pixels in [0, 1] (got {images.min():g} .. {images.max():g}); "
            "divide 8-bit images by 255"
        )
    return images, labels


def _predictor(model: Any, side: int) -> tuple[Any, Any]:
    """``(predict_fn on (N, side, side) images, label encoder)`` for an Ensemble or a classifier estimator."""
    import numpy as np

    from deepens.ensemble import Ensemble
    from deepens.sklearn import DeepEnsembleClassifier

    if isinstance(model, Ensemble):
        if not model.head.is_classifier:
            raise CommandError("--shift scores classifiers; this ensemble is a regression model")
        flat = len(model.input_shape) == 1

        def predict(images: Any) -> Any:
            return model.predict(images.reshape(len(images), -1) if flat else images)

        return predict, lambda labels: np.asarray(labels).astype(np.int64)
    if isinstance(model, DeepEnsembleClassifier):
        return (lambda images: model._distribution(images.reshape(len(images), -1))), model.encode_labels
    raise CommandError(f"--shift scores image classifiers; this model is a {type(model).__name__}")


def evaluate_shift(args: argparse.Namespace) -> int:
    """Score the model under the shifts of ``args.shift``; print a table and, with ``--out``, write
    ``shift.json`` and ``shift_<kind>.png``."""
    import deepens
    from deepens import io
    from deepens.metrics import shift_curve

    shifts = shifts_for(args.shift)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CommandError(f"--out {args.out} is a file, not a folder")
    model = deepens.load(args.model)
    metadata = io.read_metadata(args.model) if not isinstance(model, deepens.Ensemble) else {}
    images, labels = read_images(args.data, args.target or metadata.get("target"))
    side = math.isqrt(images.shape[1])
    if side * side != images.shape[1]:
        raise CommandError(f"--shift needs square images: {images.shape[1]} pixels per row is not a square")
    predict, encode = _predictor(model, side)
    records = shift_curve(
        predict,
        images.reshape(len(images), side, side),
        encode(labels),
        shifts=shifts,
        seed=getattr(args, "shift_seed", 0),
        bins=args.bins,
    )
    _print_records(records, f"{len(images)} images of {args.data}, {args.shift}")
    if args.out:
        from deepens.experiments.shift import corruption_boxes, curves_figure
        from deepens.plots import save

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        io.write_json(out / "shift.json", records)
        figure = (
            corruption_boxes({"model": records})
            if args.shift == "corrupt"
            else curves_figure(
                {"model": records},
                args.shift,
                "rotation (degrees)" if args.shift == "rotate" else "translation (pixels)",
            )
        )
        save(figure, out / f"shift_{args.shift}.png")
        print(f"wrote {out / 'shift.json'} and {out / f'shift_{args.shift}.png'}")
    return 0


def _print_records(records: list[dict[str, Any]], caption: str) -> None:
    from rich.console import Console
    from rich.table import Table

    fields = ("accuracy", "nll", "brier", "ece", "mean_confidence", "entropy", "knowledge")
    table = Table(title="deepens evaluate --shift", caption=caption)
    for name in ("shift", "intensity", *fields):
        table.add_column(name, justify="left" if name == "shift" else "right")
    for r in records:
        table.add_row(r["kind"], f"{r['intensity']:g}", *(f"{r[f]:.4f}" for f in fields))
    Console(width=120).print(table)
