"""deepens: predictive uncertainty with Deep Ensembles (Lakshminarayanan, Pritzel & Blundell, 2017), in JAX."""

from deepens import devices as _devices

# One JAX device per CPU core, so members train on different cores at once. Must run before the first
# JAX computation; it does nothing if the user configured devices or JAX has already started.
_devices.use_cpu_cores()

from deepens.adversarial import FGSM, VAT
from deepens.ensemble import Ensemble
from deepens.heads import Categorical, Gaussian, Laplace, Point, StudentT
from deepens.models import MLP, Model, as_model
from deepens.prediction import ClassificationPrediction, RegressionPrediction
from deepens.train import fit
from deepens.uncertainty import categorical_uncertainty, entropy, variance_uncertainty

__version__ = "0.1.0"

__all__ = [
    "DeepEnsembleClassifier",
    "DeepEnsembleRegressor",
    "FGSM",
    "VAT",
    "MLP",
    "Categorical",
    "ClassificationPrediction",
    "Ensemble",
    "Gaussian",
    "Laplace",
    "StudentT",
    "Model",
    "Point",
    "RegressionPrediction",
    "as_model",
    "categorical_uncertainty",
    "entropy",
    "fit",
    "load",
    "save",
    "variance_uncertainty",
]


def __getattr__(name: str):
    # The estimators and save/load import scikit-learn and safetensors, so they load on first use and
    # `import deepens` stays quick.
    if name in ("DeepEnsembleRegressor", "DeepEnsembleClassifier"):
        from deepens import sklearn

        return getattr(sklearn, name)
    if name in ("save", "load"):
        from deepens import io

        return getattr(io, name)
    raise AttributeError(f"module 'deepens' has no attribute {name!r}")
