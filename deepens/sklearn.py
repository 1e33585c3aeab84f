"""scikit-learn estimators (the public path ``deepens.sklearn``; the code lives in :mod:`deepens.estimators`)."""

from deepens.estimators import ESTIMATORS, DeepEnsembleBase, DeepEnsembleClassifier, DeepEnsembleRegressor

__all__ = ["ESTIMATORS", "DeepEnsembleBase", "DeepEnsembleClassifier", "DeepEnsembleRegressor"]
