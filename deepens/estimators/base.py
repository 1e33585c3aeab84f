"""What both estimators share: hyper-parameters (through :class:`~deepens.config.TrainConfig`),
standardisation, held-out calibration rows, training with checkpoints, and saving."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_consistent_length, check_is_fitted, validate_data

from deepens import calibration as calib
from deepens import devices, io, serialization, validation
from deepens.cache import enable_compilation_cache
from deepens.config import TrainConfig
from deepens.ensemble import Ensemble
from deepens.heads import get_head
from deepens.methods import Method
from deepens.models import ACTIVATIONS, MLP, FlaxModel
from deepens.prediction import ClassificationPrediction, RegressionPrediction
from deepens.train import fit as fit_ensemble

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

    # Hyper-parameters: set by the subclasses' ``__init__`` (scikit-learn's convention, so ``get_params``
    # finds them); declared here for the methods below that read them.
    members: int
    hidden_layer_sizes: int | tuple[int, ...]
    activation: str
    loss: str | None
    adversarial: str | None
    eps: float | None
    epochs: int
    batch_size: int | None
    learning_rate: float
    weight_decay: float
    clip_norm: float | str | None
    calibration: str | None
    calibration_fraction: float
    method: str | Method
    input_repetition: float
    batch_repetition: int
    random_state: int | np.random.RandomState | None
    devices: int | None
    verbose: bool

    # Fitted attributes (set by ``fit`` or :meth:`load`).
    ensemble_: Ensemble
    seed_: int
    x_mean_: np.ndarray
    x_scale_: np.ndarray
    n_features_in_: int
    feature_names_in_: np.ndarray
    calibration_: calib.Calibration | None
    calibration_scores_: np.ndarray | None

    # ---- hyper-parameters ----------------------------------------------------------------------

    def _head_name(self) -> str:
        raise NotImplementedError

    def _check_params(self) -> None:
        """Check the settings that are not training settings (those are checked by :meth:`_config`)."""
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, (int, np.integer)):
            sizes = (sizes,)
        if not all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 1 for w in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}")
        if self.loss is not None:
            get_head(self._head_name()).loss(self.loss)  # raises for a loss the head cannot be trained with
        if self.devices is not None:
            validation.positive_int("devices", self.devices)
        self._config(self._fixed_seed() or 0)

    def _config(self, seed: int) -> TrainConfig:
        """The estimator's training settings as the :class:`~deepens.config.TrainConfig` that ``fit`` takes
        (its checks name the bad parameter)."""
        # Every TrainConfig field but the seed is an estimator parameter of the same name, so a new
        # training setting needs no edit here.
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig) if f.name != "seed"}
        settings["adversarial"] = "none" if self.adversarial is None else self.adversarial
        return TrainConfig(**settings, seed=seed)

    def _hidden(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        return (int(sizes),) if isinstance(sizes, (int, np.integer)) else tuple(int(w) for w in sizes)

    def _json_params(self) -> dict[str, Any]:
        """``get_params()`` as plain JSON (a RandomState instance becomes None; ``seed_`` records the seed)."""
        params = self.get_params(deep=False)
        params["hidden_layer_sizes"] = list(self._hidden())
        state = self.random_state  # an integer seed is kept; a RandomState instance (or None) is not
        params["random_state"] = (
            int(state) if isinstance(state, (int, np.integer)) and not isinstance(state, bool) else None
        )
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
            self,
            X,
            y,
            reset=True,
            validate_separately=(  # pyright: ignore[reportArgumentType]  # inferred from the default False; a pair of dicts is documented
                dict(dtype=np.float64, ensure_all_finite=False),
                dict(dtype=None, ensure_2d=False, ensure_all_finite=False),
            ),
        )
        check_consistent_length(X, y)
        validation.features(X, name="X", square_safe=False)  # names the rows holding NaN, inf or huge values
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
                X,
                y,
                test_size=n_cal,
                random_state=self._seed() % (2**32),
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
        return {
            "calibration_": None if cal is None else cal.to_config(),
            "calibration_scores_": None if scores is None else np.asarray(scores, np.float64).tolist(),
        }

    def _restore_calibration(self, fitted: dict[str, Any]) -> None:
        cal, scores = fitted.get("calibration_"), fitted.get("calibration_scores_")
        self.calibration_ = None if cal is None else calib.Calibration.from_config(cal)
        self.calibration_scores_ = None if scores is None else np.asarray(scores, np.float64)

    def _distribution(self, X: Any) -> RegressionPrediction | ClassificationPrediction:
        """The ensemble's prediction (a Regression- or ClassificationPrediction) on the standardised scale."""
        x = self._standardised_x(X)  # first: it raises NotFittedError before ensemble_ is touched
        return self.ensemble_.predict(x)

    def _held_out_distribution(self, X: np.ndarray) -> RegressionPrediction | ClassificationPrediction:
        """:meth:`_distribution` of rows ``fit`` has already validated (its held-out calibration rows, an
        array ``(N, D)``): checking them again as new data would warn that they have no feature names."""
        return self.ensemble_.predict(self._standardise(X))

    def _standardised_x(self, X: Any) -> np.ndarray:
        """Check ``X`` against the training data and standardise it: float32 ``(N, D)``."""
        check_is_fitted(self, "ensemble_")
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite=False)
        validation.features(X, name="X", square_safe=False)
        return self._standardise(X)

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return validation.standardised((X - self.x_mean_) / self.x_scale_, name="X")  # refuses rows too far out

    # ---- training --------------------------------------------------------------------------------

    def _train(
        self,
        x: np.ndarray,
        targets: np.ndarray,
        size: int,
        checkpoint_dir: str | Path | None,
        checkpoint_every: int | None,
        resume: bool,
        early_stopping: Any = None,
    ) -> None:
        """Train the ensemble on standardised inputs ``x`` and targets; sets ``ensemble_`` and ``seed_``
        (``early_stopping``: a :class:`deepens.early_stopping.EarlyStopping` or None, passed to ``fit``)."""
        devices.use_cpu_cores()  # one JAX device per core if JAX has not started yet (else a no-op)
        self._check_params()
        config = self._config(0)  # the seed is set below
        enable_compilation_cache()  # a no-op under DEEPENS_NO_CACHE=1; see deepens.cache
        head = get_head(self._head_name())
        model = FlaxModel(MLP(self._hidden(), head.num_outputs(size), str(self.activation)))
        optimizer = config.optimizer(head)
        if (checkpoint_every is not None or resume) and checkpoint_dir is None:
            raise ValueError("checkpoint_every and resume need a checkpoint_dir")
        if checkpoint_dir is not None:
            io.check_checkpoint_dir(checkpoint_dir)  # a file or a saved model there fails before training
        seed = self._seed()
        digest = hashlib.sha256(x.tobytes() + targets.tobytes() + str((x.shape, targets.shape)).encode()).hexdigest()
        params = {k: v for k, v in self._json_params().items() if k not in ("verbose", "random_state", "devices")}
        info = {
            "estimator": type(self).__name__,
            "params": params,
            "seed": seed,
            "data_sha256": digest,
            "checkpoint_every": checkpoint_every,
        }
        checkpoint = None
        if resume:
            assert checkpoint_dir is not None  # checked above
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
        on_checkpoint: Callable[[Any], None] | None = None
        if checkpoint_every is not None:
            assert checkpoint_dir is not None  # checked above
            folder = checkpoint_dir

            def save(c: Any) -> None:
                if jax.process_index() == 0:  # in a multi-host run every process holds the same state
                    serialization.save_checkpoint(folder, c, info)

            on_checkpoint = save
        self.ensemble_ = fit_ensemble(
            x,
            targets,
            config.replace(seed=seed),
            head=head,
            loss=self.loss,
            model=model,
            optimizer=optimizer,
            num_classes=size if self._is_classifier else None,
            devices=self.devices,
            checkpoint_every=checkpoint_every,
            on_checkpoint=on_checkpoint,
            resume=checkpoint,
            progress=bool(self.verbose),
            description=type(self).__name__,
            early_stopping=early_stopping,
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
