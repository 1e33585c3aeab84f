"""deepens: predictive uncertainty with Deep Ensembles (Lakshminarayanan, Pritzel & Blundell, 2017), in JAX.

Importing deepens changes nothing global: to train members on several CPU cores at once, call
``deepens.devices.use_cpu_cores()`` before JAX starts (the CLI and the estimators' ``fit`` do).

``import deepens`` does not import JAX: the public names below load their modules on first use (module
``__getattr__``), so ``deepens --help`` and scripts that only read a saved model's metadata start fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepens._version import __version__

if TYPE_CHECKING:
    from deepens.adversarial import FGSM, VAT
    from deepens.config import TrainConfig
    from deepens.ensemble import Ensemble
    from deepens.heads import Categorical, Gaussian, Laplace, Point, StudentT
    from deepens.models import MLP, Model, as_model
    from deepens.prediction import ClassificationPrediction, RegressionPrediction
    from deepens.sklearn import DeepEnsembleClassifier, DeepEnsembleRegressor
    from deepens.train import fit
    from deepens.uncertainty import categorical_uncertainty, entropy, variance_uncertainty

# Public name -> the module that defines it, imported on first access.
_LAZY = {
    "FGSM": "adversarial",
    "TrainConfig": "config",
    "VAT": "adversarial",
    "Ensemble": "ensemble",
    "Categorical": "heads",
    "Gaussian": "heads",
    "Laplace": "heads",
    "Point": "heads",
    "StudentT": "heads",
    "MLP": "models",
    "Model": "models",
    "as_model": "models",
    "ClassificationPrediction": "prediction",
    "RegressionPrediction": "prediction",
    "DeepEnsembleRegressor": "sklearn",
    "DeepEnsembleClassifier": "sklearn",
    "fit": "train",
    "categorical_uncertainty": "uncertainty",
    "entropy": "uncertainty",
    "variance_uncertainty": "uncertainty",
}

__all__ = [
    "FGSM",
    "MLP",
    "VAT",
    "Categorical",
    "ClassificationPrediction",
    "DeepEnsembleClassifier",
    "DeepEnsembleRegressor",
    "Ensemble",
    "Gaussian",
    "Laplace",
    "Model",
    "Point",
    "RegressionPrediction",
    "StudentT",
    "TrainConfig",
    "__version__",
    "as_model",
    "categorical_uncertainty",
    "entropy",
    "fit",
    "load",
    "save",
    "variance_uncertainty",
]


def __getattr__(name: str) -> Any:
    """A public name from its module (cached in the package), or a submodule such as ``deepens.io``."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f"deepens.{_LAZY[name]}"), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"deepens.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"deepens.{name}":
                raise
    raise AttributeError(f"module 'deepens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def save(obj: Any, path: str | Path, *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Save an :class:`Ensemble` (of the built-in MLP) or a fitted ``DeepEnsembleRegressor``/``Classifier``
    to the folder ``path``, atomically and without pickle (see :mod:`deepens.io`). ``metadata``: extra
    plain-JSON information kept with it (``deepens.io.read_metadata`` gives it back).

    Raises ValueError for a model other than the built-in MLP, an unfitted estimator, or a ``path`` that
    holds something other than a deepens object.
    """
    from deepens import serialization
    from deepens.ensemble import Ensemble

    plain = None if metadata is None else dict(metadata)

    if isinstance(obj, Ensemble):
        return serialization.save_ensemble(obj, path, metadata=plain)
    from deepens import sklearn

    if isinstance(obj, sklearn.DeepEnsembleBase):
        return obj.save(path, metadata=plain)
    raise ValueError(f"cannot save a {type(obj).__name__}: save an Ensemble or a fitted deepens estimator")


def load(path: str | Path) -> Any:
    """Load what :func:`save` wrote, by the kind its manifest names: an :class:`Ensemble` or a fitted estimator.

    ``path`` may be a symbolic link to a model folder; the files inside must be regular files (a link,
    device or FIFO there is refused unopened, and each file's size is checked against the manifest before
    it is read; see :mod:`deepens.io`).

    Raises:
      FileNotFoundError: nothing at ``path``.
      FormatError (a ValueError): missing, truncated or modified files, files that are not regular files,
        an unknown format version or kind.
    """
    from deepens import io, serialization

    kind = io.bundle_kind(path)
    if kind == "ensemble":
        return serialization.load_ensemble(path)
    from deepens import sklearn

    if kind in sklearn.ESTIMATORS:
        return sklearn.ESTIMATORS[kind].load(path)
    raise io.FormatError(f"{path} holds a {kind}, not an ensemble or {' or '.join(sklearn.ESTIMATORS)}")
