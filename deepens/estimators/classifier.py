"""DeepEnsembleClassifier: averaged softmax members, optional temperature, uncertainty in nats."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from deepens import calibration as calib
from deepens import early_stopping as stopping_module
from deepens import mixture, validation
from deepens.config import DEFAULTS
from deepens.data.standardize import Standardizer
from deepens.early_stopping import EarlyStopping
from deepens.estimators.base import DeepEnsembleBase, _labels_from_json, _labels_to_json, _normalised
from deepens.methods import Method
from deepens.prediction import ClassificationPrediction
from deepens.uncertainty import CategoricalUncertainty


class DeepEnsembleClassifier(ClassifierMixin, DeepEnsembleBase):
    """A deep ensemble for classification: M softmax networks whose probabilities are averaged.

    Parameters as :class:`DeepEnsembleRegressor`, except: no ``head`` (always categorical) and
    ``loss``: ``None``/``nll`` (cross-entropy) or ``brier``. Labels may be any sortable values (strings too).
    ``calibration``: ``"auto"`` (default) or ``"temperature"``: one temperature on the averaged
    prediction, fitted by NLL on a stratified held-out ``calibration_fraction`` of the rows (argmax
    unchanged); ``None`` turns it off. ``"auto"`` is skipped with fewer than 50 rows. ``early_stopping``
    and ``patience``: as for the regressor, on the calibration rows' NLL.

    Fitted attributes: ``classes_``, ``ensemble_``, ``x_mean_``, ``x_scale_``, ``n_features_in_``,
    ``feature_names_in_``, ``seed_``, ``calibration_`` (a :class:`deepens.calibration.Calibration` or None).
    """

    _is_classifier = True
    _calibration_kinds = ("temperature",)
    _auto_calibration = "temperature"

    def __init__(
        self,
        *,
        members: int = DEFAULTS.members,
        hidden_layer_sizes: tuple[int, ...] = (50,),
        activation: str = "relu",
        loss: str | None = None,
        adversarial: str = "none",
        eps: float | None = DEFAULTS.eps,
        epochs: int = DEFAULTS.epochs,
        batch_size: int | None = DEFAULTS.batch_size,
        learning_rate: float = DEFAULTS.learning_rate,
        weight_decay: float = DEFAULTS.weight_decay,
        clip_norm: float | str | None = DEFAULTS.clip_norm,
        calibration: str | None = "auto",
        calibration_fraction: float = 0.2,
        early_stopping: bool = False,
        patience: int = 10,
        method: str | Method = DEFAULTS.method,
        input_repetition: float = DEFAULTS.input_repetition,
        batch_repetition: int = DEFAULTS.batch_repetition,
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
        self.early_stopping = early_stopping
        self.patience = patience
        self.method = method
        self.input_repetition = input_repetition
        self.batch_repetition = batch_repetition
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
        stopping = None
        if stopping_module.wanted(self.early_stopping, self.patience, kind is not None):
            x_held = ((X_cal - self.x_mean_) / self.x_scale_).astype(np.float32)
            stopping = EarlyStopping(x_held, encoded_cal.astype(np.int32), int(self.patience))
        self._train(x, encoded.astype(np.int32), len(self.classes_), checkpoint_dir, checkpoint_every, resume, stopping)
        self.calibration_, self.calibration_scores_ = None, None
        if kind is not None:
            log_probs = self._raw_log_proba(cast(ClassificationPrediction, self._held_out_distribution(X_cal)))
            self.calibration_ = calib.Calibration("temperature", calib.fit_temperature(log_probs, encoded_cal))
        return self

    def _distribution(self, X: Any) -> ClassificationPrediction:
        # A categorical head always gives a ClassificationPrediction.
        return cast(ClassificationPrediction, super()._distribution(X))

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
        ``probs`` ``(N, K)``, ``predicted`` labels, and ``entropy``, ``data`` and ``knowledge`` (nats), ``(N,)``
        (the members' decomposition, untempered); ``probs_uncalibrated``: the plain average of the members."""
        prediction = self._distribution(X)
        raw = _normalised(prediction.probs)
        probs = raw if getattr(self, "calibration_", None) is None else _normalised(np.exp(self._log_proba(prediction)))
        u = prediction.uncertainty
        return {
            "probs": probs,
            "probs_uncalibrated": raw,
            "predicted": self.classes_[np.argmax(probs, axis=1)],
            "entropy": np.asarray(u.total, np.float64),
            "data": np.asarray(u.data, np.float64),
            "knowledge": np.asarray(u.knowledge, np.float64),
        }

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
        if len(index) != prediction.probs.shape[0]:
            raise ValueError(f"y has {len(index)} labels for {prediction.probs.shape[0]} rows of X")
        if getattr(self, "calibration_", None) is not None:
            return -self._log_proba(prediction)[np.arange(len(index)), index]
        return np.asarray(prediction.nll(jnp.asarray(index, jnp.int32)), np.float64)

    def evaluate(self, X: Any, y: Any, *, bins: int = 15) -> dict[str, float]:
        """Every classification metric of :func:`deepens.metrics.evaluate` on ``(X, y)``: ``accuracy``,
        ``error``, ``nll``, ``brier_summed``, ``brier_per_class`` (the paper's), ``ece``/``mce`` with
        ``bins`` equal-width bins and ``ece_quantile``/``mce_quantile`` with equal-mass bins. They score
        what :meth:`predict_proba` gives: when calibrated, the tempered average, and every key appears
        again with the suffix ``_uncalibrated`` for the plain average of the members (the accuracy is
        the same: a temperature never changes the predicted class)."""
        from deepens import metrics

        index = self.encode_labels(y)
        prediction = self._distribution(X)
        raw = metrics.evaluate(prediction, index, bins=bins)
        if getattr(self, "calibration_", None) is None:
            return raw
        log_probs = self._log_proba(prediction)
        tempered = metrics.classification_summary(
            index, _normalised(np.exp(log_probs)), nll=-log_probs[np.arange(len(index)), index], bins=bins
        )
        return {**tempered, **{f"{k}_uncalibrated": v for k, v in raw.items()}}

    def _fitted_json(self) -> dict[str, Any]:
        return {**super()._fitted_json(), "classes_": _labels_to_json(self.classes_), **self._calibration_json()}

    def _restore_fitted(self, fitted: dict[str, Any]) -> None:
        super()._restore_fitted(fitted)
        self._restore_calibration(fitted)
        self.classes_ = _labels_from_json(fitted["classes_"])
