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

from deepens.estimators.base import DeepEnsembleBase
from deepens.estimators.classifier import DeepEnsembleClassifier
from deepens.estimators.regressor import DeepEnsembleRegressor

ESTIMATORS: dict[str, type[DeepEnsembleBase]] = {
    cls.__name__: cls for cls in (DeepEnsembleRegressor, DeepEnsembleClassifier)
}

__all__ = ["ESTIMATORS", "DeepEnsembleBase", "DeepEnsembleClassifier", "DeepEnsembleRegressor"]
