"""How M members are laid out in networks: deep ensembles (one network per member) and, through the same
seam, ensembles inside one network (MIMO, BatchEnsemble). See :mod:`deepens.methods.base`."""

from deepens.methods.base import METHODS, Method, get_method, register_method
from deepens.methods.batchensemble import BatchEnsemble, BatchEnsembleMLP
from deepens.methods.ensemble import DeepEnsemble
from deepens.methods.mimo import MIMO, MIMONetwork

__all__ = [
    "METHODS",
    "MIMO",
    "BatchEnsemble",
    "BatchEnsembleMLP",
    "DeepEnsemble",
    "MIMONetwork",
    "Method",
    "get_method",
    "register_method",
]
