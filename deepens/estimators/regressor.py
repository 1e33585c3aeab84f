"""DeepEnsembleRegressor: Gaussian, Laplace or Student-t members, intervals and uncertainty in y's units."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
from sklearn.base import RegressorMixin

from deepens import calibration as calib
from deepens import early_stopping as stopping_module
from deepens import validation
from deepens.calibrated import CalibratedRegression
from deepens.config import DEFAULTS
from deepens.data.standardize import Standardizer
from deepens.early_stopping import EarlyStopping
from deepens.estimators.base import DeepEnsembleBase
from deepens.methods import Method
from deepens.prediction import RegressionPrediction
from deepens.uncertainty import VarianceUncertainty


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
        The defaults are :data:`deepens.config.DEFAULTS` (40 epochs of batches of 100, the paper's UCI
        protocol, at learning rate 0.01), shared with ``deepens.fit`` and ``deepens train``.
      clip_norm: clip each gradient to this global norm before Adam; ``"auto"`` (default) is 1.0 for the
        Gaussian and Laplace heads, whose NLL can blow up when a scale collapses, and off otherwise;
        ``None`` turns it off.
      calibration: ``"auto"`` (default: ``"conformal"``), ``"conformal"`` (split-conformal intervals
        ``mean -/+ q std`` from the held-out scores ``|y - mean| / std``, coverage >= the level for
        exchangeable data), ``"scale"`` (one factor on the std fitted by held-out Gaussian NLL) or ``None``.
        ``"auto"`` is skipped with fewer than 50 rows or 2-D targets (``calibration_`` is then None).
      calibration_fraction: the share of the rows held out to fit the calibration (default 0.2); the
        networks train on the rest.
      early_stopping: stop on the calibration rows' NLL (default False): each member keeps the parameters
        of its best epoch, and training ends once none has improved for ``patience`` epochs (see
        :mod:`deepens.early_stopping`). Needs calibration rows (``calibration`` on, 50 rows or more).
      method: ``"ensemble"`` (default: ``members`` independent networks), ``"mimo"`` or ``"batchensemble"``
        (all ``members`` inside one network, at about one network's cost; see :mod:`deepens.methods`);
        ``input_repetition`` and ``batch_repetition``: MIMO's rho and b.
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
        members: int = DEFAULTS.members,
        hidden_layer_sizes: tuple[int, ...] = (50,),
        activation: str = "relu",
        head: str = "gaussian",
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
        self.early_stopping = early_stopping
        self.patience = patience
        self.method = method
        self.input_repetition = input_repetition
        self.batch_repetition = batch_repetition
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
        validation.regression_targets(y, len(X), name="y", square_safe=False)  # numeric, finite, or rows named
        X, y, X_cal, y_cal, kind = self._split_for_calibration(X, y, supported=np.ndim(y) == 1)
        y64 = np.asarray(y, np.float64).reshape(len(X), -1)
        x_stats, y_stats = Standardizer.fit(X), Standardizer.fit(y64)
        self.x_mean_, self.x_scale_ = x_stats.mean, x_stats.std
        self.y_mean_, self.y_scale_ = y_stats.mean, y_stats.std
        x = ((X - self.x_mean_) / self.x_scale_).astype(np.float32)
        targets = ((y64 - self.y_mean_) / self.y_scale_).astype(np.float32)
        if np.ndim(y) == 1:
            targets = targets[:, 0]
        stopping = None
        if stopping_module.wanted(self.early_stopping, self.patience, kind is not None):
            y_held = ((np.asarray(y_cal, np.float64).reshape(len(y_cal), -1) - self.y_mean_) / self.y_scale_)[:, 0]
            x_held = ((X_cal - self.x_mean_) / self.x_scale_).astype(np.float32)
            stopping = EarlyStopping(x_held, y_held, int(self.patience))
        self._train(
            x, targets, 1 if targets.ndim == 1 else targets.shape[1], checkpoint_dir, checkpoint_every, resume, stopping
        )
        self.calibration_, self.calibration_scores_ = None, None
        if kind is not None:
            prediction = cast(RegressionPrediction, self._held_out_distribution(X_cal))
            self.calibration_, self.calibration_scores_ = calib.fit_regression(
                self._standardised_y(y_cal, len(y_cal)),
                np.asarray(prediction.mean, np.float64),
                np.asarray(prediction.std, np.float64),
                kind,
                0.9,
            )
        return self

    def _distribution(self, X: Any) -> RegressionPrediction:
        # A regression head (gaussian, laplace, student_t or point) always gives a RegressionPrediction.
        return cast(RegressionPrediction, super()._distribution(X))

    def _stretch(self) -> float:
        """The factor the calibration stretches the mixture by about its mean (1 when uncalibrated)."""
        return calib.stretch(getattr(self, "calibration_", None))

    def _calibrated(self, prediction: RegressionPrediction, level: float) -> tuple[Any, ...]:
        """``(std, lower, upper)`` on the standardised scale, with the calibration applied if any."""
        std = self._stretch() * np.asarray(prediction.std, np.float64)
        lower, upper = calib.calibrated_interval(
            prediction.mean,
            prediction.std,
            prediction.interval,
            getattr(self, "calibration_", None),
            getattr(self, "calibration_scores_", None),
            level,
        )
        return std, lower, upper

    def _to_user(self, a: Any, *, shift: bool = True, power: int = 1) -> np.ndarray:
        """A standardised-scale quantity in the user's units: values shift and scale, stds scale,
        variances scale by the square."""
        scale = self.y_scale_ if not self.ensemble_.squeeze_target else self.y_scale_[0]
        mean = self.y_mean_ if not self.ensemble_.squeeze_target else self.y_mean_[0]
        out = np.asarray(a, np.float64) * scale**power
        return out + mean if shift else out

    def predict(self, X: Any, return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Mixture mean ``(N,)`` (``(N, T)`` for 2-D targets); with ``return_std``, also its standard
        deviation, times the calibration's stretch when calibrated (see :meth:`nll`)."""
        prediction = self._distribution(X)
        mean = self._to_user(prediction.mean)
        if return_std:
            return mean, self._to_user(self._stretch() * np.asarray(prediction.std, np.float64), shift=False)
        return mean

    def predict_interval(self, X: Any, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)``: the central interval holding probability ``level`` under the exact mixture,
        or, when calibrated (``calibration_``), ``mean -/+ q std`` with the split-conformal ``q`` of the
        held-out rows at this level (``+/-inf`` when they were too few for it), or the mixture's interval
        stretched about the mean by the fitted std factor (``"scale"``)."""
        level = validation.level(level)
        _, lower, upper = self._calibrated(self._distribution(X), level)
        return self._to_user(lower), self._to_user(upper)

    def predict_uncertainty(self, X: Any) -> VarianceUncertainty:
        """Per-row variances in squared target units: ``total = aleatoric + epistemic``, where aleatoric
        is the mean of the members' variances (noise) and epistemic the variance of their means. When
        calibrated, each is multiplied by the square of the calibration's stretch (see :meth:`nll`), so
        that ``total`` is the square of :meth:`predict`'s std and the split keeps its proportions."""
        u = self._distribution(X).uncertainty
        factor = self._stretch() ** 2
        return VarianceUncertainty(
            *(self._to_user(factor * np.asarray(v, np.float64), shift=False, power=2) for v in u)
        )

    def describe(self, X: Any, level: float = 0.9) -> dict[str, np.ndarray]:
        """Everything ``predict``, ``predict_interval`` and ``predict_uncertainty`` give, from one pass of the
        members over ``X``: ``mean``, ``std``, ``lower``, ``upper`` (the central ``level`` interval),
        ``aleatoric_std`` and ``epistemic_std``, each ``(N,)`` (``(N, T)`` for 2-D targets), in y's units."""
        level = validation.level(level)
        prediction = self._distribution(X)
        std, lower, upper = self._calibrated(prediction, level)
        u, factor = prediction.uncertainty, self._stretch()
        return {
            "mean": self._to_user(prediction.mean),
            "std": self._to_user(std, shift=False),
            "lower": self._to_user(lower),
            "upper": self._to_user(upper),
            "aleatoric_std": self._to_user(factor * np.sqrt(u.aleatoric), shift=False),
            "epistemic_std": self._to_user(factor * np.sqrt(u.epistemic), shift=False),
        }

    def _calibrated_prediction(self, prediction: RegressionPrediction) -> Any:
        cal = getattr(self, "calibration_", None)
        return prediction if cal is None else CalibratedRegression(prediction, cal, self.calibration_scores_)

    def nll(self, X: Any, y: Any) -> np.ndarray:
        """Per-row negative log-likelihood of ``y`` in the user's units, ``(N,)``, under the exact mixture
        or, when calibrated, under the calibrated distribution: the mixture stretched about its mean by
        :func:`deepens.calibration.stretch` (``"scale"``: the fitted factor; ``"conformal"``: the factor
        at which the moment-matched Gaussian's interval at the fitted level, 90%, is the conformal one).
        A conformal calibration gives intervals, not a density; this stretch is the density that agrees
        with them at the fitted level, and the same one gives :meth:`predict_cdf`, :meth:`predict`'s std
        and :meth:`predict_uncertainty`."""
        prediction = self._calibrated_prediction(self._distribution(X))
        return np.asarray(prediction.nll(self._standardised_y(y, prediction.mean.shape[0])), np.float64) + float(
            np.sum(np.log(self.y_scale_))
        )

    def predict_cdf(self, X: Any, y: Any) -> np.ndarray:
        """The CDF at ``y`` per row (``(N,)`` or ``(N, T)``) of the mixture, or when calibrated of the
        calibrated distribution (see :meth:`nll`): probability integral transform values, uniform on
        [0, 1] for a calibrated model. A CDF is unchanged by the standardisation."""
        prediction = self._calibrated_prediction(self._distribution(X))
        return np.asarray(prediction.cdf(self._standardised_y(y, prediction.mean.shape[0])), np.float64)

    def _standardised_y(self, y: Any, n: int) -> np.ndarray:
        """Targets for ``n`` rows in the user's units on the scale the networks were trained on, shaped as in
        training; a ValueError for NaN, inf, values beyond float32, another length or another width."""
        y = np.asarray(
            validation.regression_targets(y, n, name="y", square_safe=False) if np.ndim(y) <= 2 else np.asarray(y),
            np.float64,
        )
        if y.ndim != 2:
            raise ValueError(f"y must be (N,) or (N, T), got shape {np.shape(y)}")
        width = len(self.y_mean_)
        if y.shape[1] != width:
            raise ValueError(f"y has {y.shape[1]} target columns per row but the model predicts {width}")
        standardised = ((y - self.y_mean_) / self.y_scale_).astype(np.float32)
        return standardised[:, 0] if self.ensemble_.squeeze_target else standardised

    def evaluate(self, X: Any, y: Any, *, levels: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)) -> dict[str, float]:
        """Every regression metric of :func:`deepens.metrics.evaluate` on ``(X, y)``, in the user's units:
        ``nll`` (moment-matched Gaussian, the paper's), ``nll_mixture``, ``rmse``, ``mae``, ``crps``,
        ``coverage_<level>`` of the central intervals and ``miscalibration_area``. They score what the
        model predicts: when calibrated, the calibrated distribution (see :meth:`nll`) and
        :meth:`predict_interval`'s intervals, and every key appears again with the suffix
        ``_uncalibrated`` for the plain mixture."""
        from deepens import metrics

        prediction = self._distribution(X)
        y64 = np.asarray(y, np.float64)
        scores = metrics.evaluate(prediction, y64, target_shift=self.y_mean_, target_scale=self.y_scale_, levels=levels)
        cal = getattr(self, "calibration_", None)
        if cal is None:
            return scores
        calibrated = calib.regression_scores(
            prediction,
            y64,
            cal,
            self.calibration_scores_,
            target_shift=self.y_mean_,
            target_scale=self.y_scale_,
            levels=levels,
        )
        return {**calibrated, **{f"{k}_uncalibrated": v for k, v in scores.items()}}

    def _fitted_json(self) -> dict[str, Any]:
        return {
            **super()._fitted_json(),
            "y_mean_": self.y_mean_.tolist(),
            "y_scale_": self.y_scale_.tolist(),
            **self._calibration_json(),
        }

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
