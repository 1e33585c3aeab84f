"""scikit-learn estimators: :class:`DeepEnsembleRegressor` and :class:`DeepEnsembleClassifier`.

They wrap :func:`deepens.fit` with scikit-learn's conventions: the constructor only stores its
arguments, ``fit`` sets attributes ending in ``_``, and they work with ``clone``, ``Pipeline``,
``GridSearchCV`` and ``cross_val_score``, on numpy arrays and pandas frames.

Inputs (and, for regression, targets) are standardised with the training statistics before the
networks see them, as in the paper's protocol; every prediction is returned in the user's units
(a mean ``m`` and standard deviation ``s`` on the standardised scale become ``m * scale + mean`` and
``s * scale``; log-densities gain ``-log(scale)`` per target).

Beyond ``predict``/``predict_proba``/``score``:

- ``DeepEnsembleRegressor.predict(X, return_std=True)`` as in ``GaussianProcessRegressor``;
  ``predict_interval(X, level=0.9)``: the central interval of the exact mixture;
  ``predict_uncertainty(X)``: total, aleatoric and epistemic *variance* per row (squared target units).
- ``DeepEnsembleClassifier.predict_uncertainty(X)``: total, data and knowledge uncertainty per row, in nats.
- ``nll(X, y)``: per-row negative log-likelihood under the ensemble's mixture.
- ``save(path)`` (see :mod:`deepens.io`); ``Estimator.load(path)`` or ``deepens.load(path)`` gives it back.
- ``fit(X, y, checkpoint_dir=..., checkpoint_every=N, resume=True)``: checkpoint every N epochs and
  continue an interrupted fit to the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d, validate_data

from deepens import calibration as calib
from deepens import devices, io, mixture, serialization, validation
from deepens.cache import enable_compilation_cache
from deepens.data.standardize import Standardizer
from deepens.heads import get_head
from deepens.models import ACTIVATIONS, MLP, FlaxModel
from deepens.prediction import ClassificationPrediction, RegressionPrediction
from deepens.train import fit as fit_ensemble
from deepens.train import make_optimizer, resolve_clip_norm
from deepens.uncertainty import CategoricalUncertainty, VarianceUncertainty

ADVERSARIAL = ("none", "fgsm", "vat")
_SEED_LIMIT = 2**31 - 1


def _normalised(probs: Any) -> np.ndarray:
    """Float64 probabilities whose rows sum to 1 exactly enough for scikit-learn's checks."""
    probs = np.asarray(probs, np.float64)
    return probs / probs.sum(axis=1, keepdims=True)


def _labels_to_json(classes: np.ndarray) -> dict[str, Any]:
    kind = classes.dtype.kind
    if kind == "b":
        values: list[Any] = [bool(c) for c in classes]
    elif kind in "iu":
        values = [int(c) for c in classes]
    elif kind == "f":
        values = [float(c) for c in classes]
    elif kind in "UO" and all(isinstance(c, str) for c in classes):
        values = [str(c) for c in classes]
    else:
        raise ValueError(f"cannot save class labels of dtype {classes.dtype} (only numbers and strings)")
    return {"dtype": "object" if kind == "O" else classes.dtype.str, "values": values}


def _labels_from_json(saved: dict[str, Any]) -> np.ndarray:
    return np.asarray(saved["values"], dtype=object if saved["dtype"] == "object" else np.dtype(saved["dtype"]))


class DeepEnsembleBase(BaseEstimator):
    """What both estimators share: hyper-parameters, standardisation, training, saving."""

    # Set by subclasses.
    _is_classifier: bool = False

    # ---- hyper-parameters ----------------------------------------------------------------------

    def _head_name(self) -> str:
        raise NotImplementedError

    def _check_params(self) -> None:
        validation.positive_int("members", self.members)
        validation.positive_int("epochs", self.epochs)
        if self.batch_size is not None:
            validation.positive_int("batch_size", self.batch_size)
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, (int, np.integer)):
            sizes = (sizes,)
        if not all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 1 for w in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        adversarial = "none" if self.adversarial is None else self.adversarial
        if adversarial not in ADVERSARIAL:
            raise ValueError(f"adversarial must be one of {ADVERSARIAL}, got {self.adversarial!r}")
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.number)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.eps is not None and (not isinstance(self.eps, (int, float, np.number)) or not 0 <= self.eps < np.inf):
            raise ValueError(f"eps must be a finite number >= 0 or None, got {self.eps!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if self.loss is not None:
            get_head(self._head_name()).loss(self.loss)  # raises for a loss the head cannot be trained with
        if self.devices is not None:
            validation.positive_int("devices", self.devices)

    def _hidden(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        return (int(sizes),) if isinstance(sizes, (int, np.integer)) else tuple(int(w) for w in sizes)

    def _json_params(self) -> dict[str, Any]:
        """``get_params()`` as plain JSON (a RandomState instance becomes None; ``seed_`` records the seed)."""
        params = self.get_params(deep=False)
        params["hidden_layer_sizes"] = list(self._hidden())
        params["random_state"] = None if self._fixed_seed() is None else int(self.random_state)
        for key, value in params.items():
            if isinstance(value, np.generic):
                params[key] = value.item()
        return params

    def _fixed_seed(self) -> int | None:
        """The seed an integer ``random_state`` fixes, or None (unseeded, or a RandomState instance)."""
        state = self.random_state
        if isinstance(state, (int, np.integer)) and not isinstance(state, bool):
            return int(state) % _SEED_LIMIT
        return None

    def _seed(self) -> int:
        fixed = self._fixed_seed()
        return fixed if fixed is not None else int(check_random_state(self.random_state).randint(_SEED_LIMIT))

    # ---- input checks and standardisation --------------------------------------------------------

    def _validate_xy(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(
            self, X, y, reset=True,
            validate_separately=(
                dict(dtype=np.float64, ensure_all_finite=False),
                dict(dtype=None, ensure_2d=False, ensure_all_finite=False),
            ),
        )
        check_consistent_length(X, y)
        validation.features(X, name="X")  # names the rows holding NaN or inf
        return X, y

    # ---- calibration on held-out rows -------------------------------------------------------------

    _calibration_kinds: tuple[str, ...] = ()
    _auto_calibration: str = ""
    AUTO_CALIBRATION_MIN_ROWS = 50

    def _split_for_calibration(self, X: np.ndarray, y: np.ndarray, *, supported: bool = True) -> tuple[Any, ...]:
        """``(X_fit, y_fit, X_cal, y_cal, kind)``: the rows to train on and the held-out calibration rows
        (stratified for classifiers), or all rows and ``None`` when calibration is off or skipped.

        ``"auto"`` is skipped (``calibration_ = None``) with fewer than AUTO_CALIBRATION_MIN_ROWS rows,
        where holding out rows costs more than it gives, or when the split is impossible; an explicit
        kind raises instead."""
        kind = self.calibration
        if kind is None:
            return X, y, None, None, None
        auto = kind == "auto"
        if auto:
            kind = self._auto_calibration
        elif kind not in self._calibration_kinds:
            raise ValueError(f"calibration must be 'auto', None or one of {self._calibration_kinds}, got {kind!r}")
        fraction = self.calibration_fraction
        if not isinstance(fraction, (int, float, np.number)) or not 0.0 < float(fraction) < 1.0:
            raise ValueError(f"calibration_fraction must lie strictly inside (0, 1), got {fraction!r}")
        if auto and (len(X) < self.AUTO_CALIBRATION_MIN_ROWS or not supported):
            return X, y, None, None, None
        if not supported:
            raise ValueError(f"{kind} calibration needs 1-D targets, got y of shape {np.shape(y)}")
        n_cal = int(np.ceil(float(fraction) * len(X)))
        if n_cal < calib.MIN_ROWS:
            raise ValueError(
                f"calibration needs at least {calib.MIN_ROWS} held-out rows, but calibration_fraction="
                f"{fraction} of {len(X)} rows gives {n_cal}; use more rows, a larger fraction or calibration=None"
            )
        try:
            X_fit, X_cal, y_fit, y_cal = train_test_split(
                X, y, test_size=n_cal, random_state=self._seed() % (2**32),
                stratify=y if self._is_classifier else None,
            )
        except ValueError as err:
            if auto:
                return X, y, None, None, None
            raise ValueError(f"cannot hold out calibration rows: {err}") from None
        return X_fit, y_fit, X_cal, y_cal, kind

    def _calibration_json(self) -> dict[str, Any]:
        cal = getattr(self, "calibration_", None)
        scores = getattr(self, "calibration_scores_", None)
        return {"calibration_": None if cal is None else cal.to_config(),
                "calibration_scores_": None if scores is None else np.asarray(scores, np.float64).tolist()}

    def _restore_calibration(self, fitted: dict[str, Any]) -> None:
        cal, scores = fitted.get("calibration_"), fitted.get("calibration_scores_")
        self.calibration_ = None if cal is None else calib.Calibration.from_config(cal)
        self.calibration_scores_ = None if scores is None else np.asarray(scores, np.float64)

    def _distribution(self, X: Any) -> RegressionPrediction | ClassificationPrediction:
        """The ensemble's prediction (a Regression- or ClassificationPrediction) on the standardised scale."""
        x = self._standardised_x(X)  # first: it raises NotFittedError before ensemble_ is touched
        return self.ensemble_.predict(x)

    def _standardised_x(self, X: Any) -> np.ndarray:
        """Check ``X`` against the training data and standardise it: float32 ``(N, D)``."""
        check_is_fitted(self, "ensemble_")
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite=False)
        validation.features(X, name="X")
        return ((X - self.x_mean_) / self.x_scale_).astype(np.float32)

    # ---- training --------------------------------------------------------------------------------

    def _train(
        self,
        x: np.ndarray,
        targets: np.ndarray,
        size: int,
        checkpoint_dir: str | Path | None,
        checkpoint_every: int | None,
        resume: bool,
    ) -> None:
        """Train the ensemble on standardised inputs ``x`` and targets; sets ``ensemble_`` and ``seed_``."""
        devices.use_cpu_cores()  # one JAX device per core if JAX has not started yet (else a no-op)
        self._check_params()
        enable_compilation_cache()  # a no-op under DEEPENS_NO_CACHE=1; see deepens.cache
        head = get_head(self._head_name())
        model = FlaxModel(MLP(self._hidden(), head.num_outputs(size), str(self.activation)))
        clip_norm = resolve_clip_norm(self.clip_norm, head)
        optimizer = make_optimizer(float(self.learning_rate), float(self.weight_decay), clip_norm)
        if (checkpoint_every is not None or resume) and checkpoint_dir is None:
            raise ValueError("checkpoint_every and resume need a checkpoint_dir")
        seed = self._seed()
        digest = hashlib.sha256(x.tobytes() + targets.tobytes() + str((x.shape, targets.shape)).encode()).hexdigest()
        params = {k: v for k, v in self._json_params().items() if k not in ("verbose", "random_state", "devices")}
        info = {"estimator": type(self).__name__, "params": params, "seed": seed, "data_sha256": digest,
                "checkpoint_every": checkpoint_every}
        checkpoint = None
        if resume:
            latest = io.latest_checkpoint(checkpoint_dir)
            if latest is not None:
                checkpoint, saved = serialization.load_checkpoint(latest, model, optimizer, x.shape[1:])
                if self._fixed_seed() is None:
                    seed = info["seed"] = saved["seed"]  # an unseeded run continues with the seed it drew
                differing = sorted(k for k in info if info[k] != saved.get(k))
                if differing:
                    raise ValueError(
                        f"the checkpoint {latest} belongs to another run (its {', '.join(differing)} differ); "
                        "resume with the same data and settings (checkpoint_every included), or remove it"
                    )
        on_checkpoint = None
        if checkpoint_every is not None:
            def on_checkpoint(c: Any) -> None:
                if jax.process_index() == 0:  # in a multi-host run every process holds the same state
                    serialization.save_checkpoint(checkpoint_dir, c, info)
        adversarial = None if self.adversarial in (None, "none") else self.adversarial
        self.ensemble_ = fit_ensemble(
            x, targets, head=head, loss=self.loss, model=model, members=self.members, epochs=self.epochs,
            batch_size=self.batch_size, optimizer=optimizer, adversarial=adversarial,
            eps=None if self.eps is None else float(self.eps), num_classes=size if self._is_classifier else None,
            seed=seed, devices=self.devices, checkpoint_every=checkpoint_every, on_checkpoint=on_checkpoint,
            resume=checkpoint,
            progress=bool(self.verbose), description=type(self).__name__,
        )
        self.seed_ = seed

    # ---- saving ----------------------------------------------------------------------------------

    def save(self, path: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
        """Save the fitted estimator to the folder ``path``, atomically and without pickle (see
        :mod:`deepens.io`); :meth:`load` and ``deepens.load`` read it. ``metadata``: extra plain JSON."""
        config, arrays = self._to_saved()
        return serialization.save_bundle(path, type(self).__name__, config, arrays, metadata)

    @classmethod
    def load(cls, path: str | Path) -> DeepEnsembleBase:
        """The fitted estimator :meth:`save` wrote to ``path`` (FormatError if it holds anything else)."""
        _, config, arrays = io.read_bundle(path, (cls.__name__,))
        with serialization.mangled(str(path)):
            return cls._from_saved(config, arrays, str(path))

    def _fitted_json(self) -> dict[str, Any]:
        fitted: dict[str, Any] = {
            "n_features_in_": int(self.n_features_in_),
            "x_mean_": self.x_mean_.tolist(),
            "x_scale_": self.x_scale_.tolist(),
            "seed_": int(self.seed_),
        }
        if hasattr(self, "feature_names_in_"):
            fitted["feature_names_in_"] = [str(c) for c in self.feature_names_in_]
        return fitted

    def _restore_fitted(self, fitted: dict[str, Any]) -> None:
        self.n_features_in_ = int(fitted["n_features_in_"])
        self.x_mean_ = np.asarray(fitted["x_mean_"], np.float64)
        self.x_scale_ = np.asarray(fitted["x_scale_"], np.float64)
        self.seed_ = int(fitted["seed_"])
        if "feature_names_in_" in fitted:
            self.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)

    def _to_saved(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        check_is_fitted(self, "ensemble_")
        config = {
            "estimator": {"params": self._json_params(), "fitted": self._fitted_json()},
            "ensemble": serialization.ensemble_config(self.ensemble_),
        }
        return config, serialization.ensemble_arrays(self.ensemble_)

    @classmethod
    def _from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> DeepEnsembleBase:
        params = dict(config["estimator"]["params"])
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        estimator = cls(**params)
        estimator._restore_fitted(config["estimator"]["fitted"])
        estimator.ensemble_ = serialization.ensemble_from(config["ensemble"], arrays, where)
        return estimator

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled arrays land on one device; put the members back where fit placed them, so an
        # unpickled estimator predicts bitwise what the original did.
        super().__setstate__(state)
        if "ensemble_" in self.__dict__:
            self.ensemble_ = serialization.placed(self.ensemble_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class DeepEnsembleRegressor(RegressorMixin, DeepEnsembleBase):
    """A deep ensemble for regression: M networks, each predicting a Gaussian (or Laplace) distribution.

    Parameters:
      members: M, the number of networks.
      hidden_layer_sizes: widths of the MLP's hidden layers.
      activation: ``relu``, ``tanh``, ``gelu``, ``silu``, ``elu`` or ``sigmoid``.
      head: ``gaussian``, ``laplace``, ``student_t`` (trained on their NLL) or ``point`` (the MSE/L1 baseline).
      loss: ``None`` (the head's NLL; ``mse`` for ``point``), or ``nll``, ``mse``, ``l1``, or ``beta_nll``
        for the Gaussian head (Seitzer et al. 2022, at the head's default ``beta = 0.5``).
      adversarial: ``none``, ``fgsm`` or ``vat``; ``eps`` is its step as a fraction of each (standardised)
        feature's training range (default 0.01, the paper's).
      epochs, batch_size (``None``: full batch), learning_rate, weight_decay: Adam training settings.
        The defaults (40 epochs of batches of 100) are the paper's UCI protocol; the paper's printed
        learning rate is ambiguous, and 0.01 is used here.
      clip_norm: clip each gradient to this global norm before Adam; ``"auto"`` (default) is 1.0 for the
        Gaussian and Laplace heads, whose NLL can blow up when a scale collapses, and off otherwise;
        ``None`` turns it off.
      calibration: ``"auto"`` (default: ``"conformal"``), ``"conformal"`` (split-conformal intervals
        ``mean -/+ q std`` from the held-out scores ``|y - mean| / std``, coverage >= the level for
        exchangeable data), ``"scale"`` (one factor on the std fitted by held-out Gaussian NLL) or ``None``.
        ``"auto"`` is skipped with fewer than 50 rows or 2-D targets (``calibration_`` is then None).
      calibration_fraction: the share of the rows held out to fit the calibration (default 0.2); the
        networks train on the rest.
      random_state: the seed (an int gives a reproducible fit; ``None`` draws one, kept in ``seed_``).
      devices: train on the first that many devices JAX sees (``None``: all of them, on every host of a
        multi-host run; members are split over them).
      verbose: show a progress bar over epochs.

    Fitted attributes: ``ensemble_`` (a :class:`deepens.Ensemble` on the standardised scale), ``x_mean_``,
    ``x_scale_``, ``y_mean_``, ``y_scale_`` (``(D,)`` and ``(T,)``), ``n_features_in_``,
    ``feature_names_in_`` (frames with string column names), ``seed_``, ``calibration_`` (a
    :class:`deepens.calibration.Calibration` or None) and ``calibration_scores_`` (the sorted held-out
    conformal scores, or None).
    """

    _calibration_kinds = ("conformal", "scale")
    _auto_calibration = "conformal"

    def __init__(
        self,
        *,
        members: int = 5,
        hidden_layer_sizes: tuple[int, ...] = (50,),
        activation: str = "relu",
        head: str = "gaussian",
        loss: str | None = None,
        adversarial: str = "none",
        eps: float | None = None,
        epochs: int = 40,
        batch_size: int | None = 100,
        learning_rate: float = 0.01,
        weight_decay: float = 0.0,
        clip_norm: float | str | None = "auto",
        calibration: str | None = "auto",
        calibration_fraction: float = 0.2,
        random_state: int | None = None,
        devices: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.members = members
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.head = head
        self.loss = loss
        self.adversarial = adversarial
        self.eps = eps
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state
        self.devices = devices
        self.verbose = verbose

    def _head_name(self) -> str:
        if self.head not in ("gaussian", "laplace", "student_t", "point"):
            raise ValueError(f"head must be 'gaussian', 'laplace', 'student_t' or 'point', got {self.head!r}")
        return self.head

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
    ) -> DeepEnsembleRegressor:
        """Train on ``X`` ``(N, D)`` and ``y`` ``(N,)`` or ``(N, T)``.

        ``checkpoint_dir``/``checkpoint_every``: write a checkpoint every N epochs; ``resume``: continue
        from the newest checkpoint there (when there is one) to the same result as an uninterrupted fit.
        """
        X, y = self._validate_xy(X, y)
        validation.regression_targets(y, len(X), name="y")  # numeric and finite, or an error naming rows
        X, y, X_cal, y_cal, kind = self._split_for_calibration(X, y, supported=np.ndim(y) == 1)
        y64 = np.asarray(y, np.float64).reshape(len(X), -1)
        x_stats, y_stats = Standardizer.fit(X), Standardizer.fit(y64)
        self.x_mean_, self.x_scale_ = x_stats.mean, x_stats.std
        self.y_mean_, self.y_scale_ = y_stats.mean, y_stats.std
        x = ((X - self.x_mean_) / self.x_scale_).astype(np.float32)
        targets = ((y64 - self.y_mean_) / self.y_scale_).astype(np.float32)
        if np.ndim(y) == 1:
            targets = targets[:, 0]
        self._train(x, targets, 1 if targets.ndim == 1 else targets.shape[1], checkpoint_dir, checkpoint_every, resume)
        self.calibration_, self.calibration_scores_ = None, None
        if kind is not None:
            prediction = self._distribution(X_cal)
            args = (self._standardised_y(y_cal), np.asarray(prediction.mean, np.float64),
                    np.asarray(prediction.std, np.float64))
            if kind == "scale":
                self.calibration_ = calib.Calibration("scale", calib.fit_std_scale(*args))
            else:
                self.calibration_scores_ = np.sort(calib.conformal_scores(*args))
                level = 0.9
                self.calibration_ = calib.Calibration(
                    "conformal", calib.conformal_quantile(self.calibration_scores_, level), level)
        return self

    def _calibrated(self, prediction: RegressionPrediction, level: float) -> tuple[Any, ...]:
        """``(std, lower, upper)`` on the standardised scale, with the calibration applied if any."""
        cal = getattr(self, "calibration_", None)
        if cal is None:
            return (prediction.std, *prediction.interval(level))
        mean, std = np.asarray(prediction.mean, np.float64), np.asarray(prediction.std, np.float64)
        if cal.kind == "scale":
            std = cal.value * std
            q = float(ndtri(0.5 + level / 2))  # central interval of the moment-matched Gaussian
        else:
            q = calib.conformal_quantile(self.calibration_scores_, level)
        lower, upper = calib.conformal_interval(mean, std, q)
        return std, lower, upper

    def _to_user(self, a: Any, *, shift: bool = True, power: int = 1) -> np.ndarray:
        """A standardised-scale quantity in the user's units: values shift and scale, stds scale,
        variances scale by the square."""
        scale = self.y_scale_ if not self.ensemble_.squeeze_target else self.y_scale_[0]
        mean = self.y_mean_ if not self.ensemble_.squeeze_target else self.y_mean_[0]
        out = np.asarray(a, np.float64) * scale**power
        return out + mean if shift else out

    def predict(self, X: Any, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Mixture mean ``(N,)`` (``(N, T)`` for 2-D targets); with ``return_std``, also its standard deviation."""
        prediction = self._distribution(X)
        mean = self._to_user(prediction.mean)
        if return_std:
            cal = getattr(self, "calibration_", None)
            std = prediction.std if cal is None or cal.kind != "scale" else cal.value * np.asarray(prediction.std)
            return mean, self._to_user(std, shift=False)
        return mean

    def predict_interval(self, X: Any, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)``: the central interval holding probability ``level`` under the exact mixture,
        or, when calibrated (``calibration_``), ``mean -/+ q std`` with the split-conformal ``q`` of the
        held-out rows at this level (``+/-inf`` when they were too few for it), or the moment-matched
        Gaussian interval with the std scaled by the fitted factor."""
        if not 0.0 < float(level) < 1.0:
            raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
        _, lower, upper = self._calibrated(self._distribution(X), float(level))
        return self._to_user(lower), self._to_user(upper)

    def predict_uncertainty(self, X: Any) -> VarianceUncertainty:
        """Per-row variances in squared target units: ``total = aleatoric + epistemic``, where aleatoric
        is the mean of the members' variances (noise) and epistemic the variance of their means."""
        u = self._distribution(X).uncertainty
        return VarianceUncertainty(*(self._to_user(v, shift=False, power=2) for v in u))

    def describe(self, X: Any, level: float = 0.9) -> dict[str, np.ndarray]:
        """Everything ``predict``, ``predict_interval`` and ``predict_uncertainty`` give, from one pass of the
        members over ``X``: ``mean``, ``std``, ``lower``, ``upper`` (the central ``level`` interval),
        ``aleatoric_std`` and ``epistemic_std``, each ``(N,)`` (``(N, T)`` for 2-D targets), in y's units."""
        if not 0.0 < float(level) < 1.0:
            raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
        prediction = self._distribution(X)
        std, lower, upper = self._calibrated(prediction, float(level))
        u = prediction.uncertainty
        return {
            "mean": self._to_user(prediction.mean), "std": self._to_user(std, shift=False),
            "lower": self._to_user(lower), "upper": self._to_user(upper),
            "aleatoric_std": self._to_user(np.sqrt(u.aleatoric), shift=False),
            "epistemic_std": self._to_user(np.sqrt(u.epistemic), shift=False),
        }

    def nll(self, X: Any, y: Any) -> np.ndarray:
        """Per-row negative log-likelihood of ``y`` under the exact mixture, in the user's units, ``(N,)``."""
        prediction = self._distribution(X)
        return np.asarray(prediction.nll(self._standardised_y(y)), np.float64) + float(np.sum(np.log(self.y_scale_)))

    def predict_cdf(self, X: Any, y: Any) -> np.ndarray:
        """The mixture's CDF at ``y`` per row (``(N,)`` or ``(N, T)``): probability integral transform
        values, uniform on [0, 1] for a calibrated model. A CDF is unchanged by the standardisation."""
        prediction = self._distribution(X)
        return np.asarray(prediction.cdf(self._standardised_y(y)), np.float64)

    def _standardised_y(self, y: Any) -> np.ndarray:
        """Targets in the user's units on the scale the networks were trained on, shaped as in training."""
        y = np.asarray(y, np.float64)
        standardised = ((y.reshape(len(y), -1) - self.y_mean_) / self.y_scale_).astype(np.float32)
        return standardised[:, 0] if self.ensemble_.squeeze_target else standardised

    def evaluate(self, X: Any, y: Any, *, levels: tuple[float, ...] = (0.5, 0.9, 0.95)) -> dict[str, float]:
        """Every regression metric of :func:`deepens.metrics.evaluate` on ``(X, y)``, in the user's units:
        ``nll`` (moment-matched Gaussian, the paper's), ``nll_mixture``, ``rmse``, ``mae``, ``crps``,
        ``coverage_<level>`` of the central intervals and ``miscalibration_area``. When calibrated,
        ``coverage_<level>`` is that of :meth:`predict_interval`'s calibrated intervals and
        ``coverage_<level>_uncalibrated`` that of the mixture's; the other scores are the mixture's."""
        from deepens import metrics

        prediction = self._distribution(X)
        y64 = np.asarray(y, np.float64)
        scores = metrics.evaluate(prediction, y64, target_shift=self.y_mean_,
                                  target_scale=self.y_scale_, levels=levels)
        if getattr(self, "calibration_", None) is not None:
            for level in levels:
                _, lower, upper = self._calibrated(prediction, float(level))
                inside = (self._to_user(lower) <= y64) & (y64 <= self._to_user(upper))
                scores[f"coverage_{level:g}_uncalibrated"] = scores[f"coverage_{level:g}"]
                scores[f"coverage_{level:g}"] = float(np.mean(inside))
        return scores

    def _fitted_json(self) -> dict[str, Any]:
        return {**super()._fitted_json(), "y_mean_": self.y_mean_.tolist(), "y_scale_": self.y_scale_.tolist(),
                **self._calibration_json()}

    def _restore_fitted(self, fitted: dict[str, Any]) -> None:
        super()._restore_fitted(fitted)
        self._restore_calibration(fitted)
        self.y_mean_ = np.asarray(fitted["y_mean_"], np.float64)
        self.y_scale_ = np.asarray(fitted["y_scale_"], np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


class DeepEnsembleClassifier(ClassifierMixin, DeepEnsembleBase):
    """A deep ensemble for classification: M softmax networks whose probabilities are averaged.

    Parameters as :class:`DeepEnsembleRegressor`, except: no ``head`` (always categorical) and
    ``loss``: ``None``/``nll`` (cross-entropy) or ``brier``. Labels may be any sortable values (strings too).
    ``calibration``: ``"auto"`` (default) or ``"temperature"``: one temperature on the averaged
    prediction, fitted by NLL on a stratified held-out ``calibration_fraction`` of the rows (argmax
    unchanged); ``None`` turns it off. ``"auto"`` is skipped with fewer than 50 rows.

    Fitted attributes: ``classes_``, ``ensemble_``, ``x_mean_``, ``x_scale_``, ``n_features_in_``,
    ``feature_names_in_``, ``seed_``.
    """

    _is_classifier = True
    _calibration_kinds = ("temperature",)
    _auto_calibration = "temperature"

    def __init__(
        self,
        *,
        members: int = 5,
        hidden_layer_sizes: tuple[int, ...] = (50,),
        activation: str = "relu",
        loss: str | None = None,
        adversarial: str = "none",
        eps: float | None = None,
        epochs: int = 40,
        batch_size: int | None = 100,
        learning_rate: float = 0.01,
        weight_decay: float = 0.0,
        clip_norm: float | str | None = "auto",
        calibration: str | None = "auto",
        calibration_fraction: float = 0.2,
        random_state: int | None = None,
        devices: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.members = members
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.adversarial = adversarial
        self.eps = eps
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state
        self.devices = devices
        self.verbose = verbose

    def _head_name(self) -> str:
        return "categorical"

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        resume: bool = False,
    ) -> DeepEnsembleClassifier:
        """Train on ``X`` ``(N, D)`` and labels ``y`` ``(N,)`` (see :meth:`DeepEnsembleRegressor.fit`)."""
        X, y = self._validate_xy(X, y)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"classification needs at least 2 classes in y, got only one class: {self.classes_[0]!r}")
        X, encoded, X_cal, encoded_cal, kind = self._split_for_calibration(X, encoded)
        x_stats = Standardizer.fit(X)
        self.x_mean_, self.x_scale_ = x_stats.mean, x_stats.std
        x = ((X - self.x_mean_) / self.x_scale_).astype(np.float32)
        self._train(x, encoded.astype(np.int32), len(self.classes_), checkpoint_dir, checkpoint_every, resume)
        self.calibration_, self.calibration_scores_ = None, None
        if kind is not None:
            log_probs = self._raw_log_proba(self._distribution(X_cal))
            self.calibration_ = calib.Calibration("temperature", calib.fit_temperature(log_probs, encoded_cal))
        return self

    @staticmethod
    def _raw_log_proba(prediction: ClassificationPrediction) -> np.ndarray:
        log_softmax = jax.nn.log_softmax(prediction.member_outputs, axis=-1)
        return np.asarray(mixture.mixture_log_prob(log_softmax), np.float64)

    def _log_proba(self, prediction: ClassificationPrediction) -> np.ndarray:
        """The mixture's log-probabilities ``(N, K)``, tempered when ``calibration_`` holds a temperature."""
        log_probs = self._raw_log_proba(prediction)
        cal = getattr(self, "calibration_", None)
        return log_probs if cal is None else calib.temper(log_probs, cal.value)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The average of the members' class probabilities, ``(N, K)``, columns in the order of ``classes_``;
        when calibrated, ``softmax(log(average) / T)`` with the temperature fitted on held-out rows."""
        prediction = self._distribution(X)
        if getattr(self, "calibration_", None) is None:
            return _normalised(prediction.probs)
        return _normalised(np.exp(self._log_proba(prediction)))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log predict_proba(X)`` computed from the members' log-softmax (exact for tiny probabilities)."""
        return self._log_proba(self._distribution(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class per row, ``(N,)``, as labels from ``classes_``."""
        probs = self.predict_proba(X)  # first: it raises NotFittedError before classes_ is touched
        return self.classes_[np.argmax(probs, axis=1)]

    def predict_uncertainty(self, X: Any) -> CategoricalUncertainty:
        """Per-row uncertainty in nats: total (entropy of the mean), data (mean entropy) and knowledge
        (their difference: the mutual information, large where the members disagree)."""
        return CategoricalUncertainty(*(np.asarray(v, np.float64) for v in self._distribution(X).uncertainty))

    def describe(self, X: Any) -> dict[str, np.ndarray]:
        """``predict_proba``, ``predict`` and ``predict_uncertainty`` from one pass of the members over ``X``:
        ``probs`` ``(N, K)``, ``predicted`` labels, and ``entropy``, ``data`` and ``knowledge`` (nats), ``(N,)``."""
        prediction = self._distribution(X)
        probs = _normalised(prediction.probs if getattr(self, "calibration_", None) is None
                            else np.exp(self._log_proba(prediction)))
        u = prediction.uncertainty
        return {"probs": probs, "predicted": self.classes_[np.argmax(probs, axis=1)],
                "entropy": np.asarray(u.total, np.float64), "data": np.asarray(u.data, np.float64),
                "knowledge": np.asarray(u.knowledge, np.float64)}

    def encode_labels(self, y: Any) -> np.ndarray:
        """Indices into ``classes_`` ``(N,)``; a ValueError naming labels the model never saw in training."""
        check_is_fitted(self, "classes_")
        y = np.asarray(column_or_1d(y))
        index = np.searchsorted(self.classes_, y) if len(y) else np.zeros(0, int)
        index = np.clip(index, 0, len(self.classes_) - 1)
        unseen = np.flatnonzero(self.classes_[index] != y)
        if len(unseen):
            labels = ", ".join(repr(v) for v in dict.fromkeys(y[unseen].tolist()))
            raise ValueError(
                f"y has classes the model never saw in training: {labels} in "
                f"{validation._describe_rows(unseen)}; it knows {self.classes_.tolist()}"
            )
        return index

    def nll(self, X: Any, y: Any) -> np.ndarray:
        """Per-row negative log-probability of the true class under the ensemble (tempered when
        calibrated, as :meth:`predict_proba`), ``(N,)`` in nats."""
        index = self.encode_labels(y)
        prediction = self._distribution(X)
        if getattr(self, "calibration_", None) is not None:
            return -self._log_proba(prediction)[np.arange(len(index)), index]
        return np.asarray(prediction.nll(jnp.asarray(index, jnp.int32)), np.float64)

    def evaluate(self, X: Any, y: Any, *, bins: int = 15) -> dict[str, float]:
        """Every classification metric of :func:`deepens.metrics.evaluate` on ``(X, y)``: ``accuracy``,
        ``error``, ``nll``, ``brier_summed``, ``brier_per_class`` (the paper's), ``ece``/``mce`` with
        ``bins`` equal-width bins and ``ece_quantile``/``mce_quantile`` with equal-mass bins. These score
        the uncalibrated mixture (the temperature in ``calibration_`` is not applied here)."""
        from deepens import metrics

        index = self.encode_labels(y)
        return metrics.evaluate(self._distribution(X), index, bins=bins)

    def _fitted_json(self) -> dict[str, Any]:
        return {**super()._fitted_json(), "classes_": _labels_to_json(self.classes_), **self._calibration_json()}

    def _restore_fitted(self, fitted: dict[str, Any]) -> None:
        super()._restore_fitted(fitted)
        self._restore_calibration(fitted)
        self.classes_ = _labels_from_json(fitted["classes_"])


ESTIMATORS: dict[str, type[DeepEnsembleBase]] = {
    cls.__name__: cls for cls in (DeepEnsembleRegressor, DeepEnsembleClassifier)
}

__all__ = ["DeepEnsembleClassifier", "DeepEnsembleRegressor"]
