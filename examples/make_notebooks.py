"""Write the notebooks of examples/ from the cells below: ``python examples/make_notebooks.py``.

The notebooks are stored without outputs; this file is their source, so a change is reviewed as Python
rather than as notebook JSON (tests/test_notebooks.py checks that the committed notebooks match it and
that they carry no outputs). Every notebook reads ``DEEPENS_QUICK=1`` to run small (the tests do, under a
minute each) and runs the practical's full settings otherwise. Code cells tagged ``figure`` must show
an image; the tests check that they do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def code(text: str, *, figure: bool = False) -> nbformat.NotebookNode:
    cell = new_code_cell(text.strip("\n"))
    if figure:
        cell.metadata["tags"] = ["figure"]
    return cell


def notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):  # fixed ids, so rebuilding an unchanged notebook changes no byte
        cell.id = f"cell-{i:02d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


SETUP = '''
%matplotlib inline
import os
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

import deepens
from deepens import metrics, plots
from deepens.cache import enable_compilation_cache
from deepens.data import toy

# DEEPENS_QUICK=1 (the tests) shrinks data and epochs so the notebook runs in under a minute.
QUICK = os.environ.get("DEEPENS_QUICK", "0") not in ("", "0")
enable_compilation_cache()  # compiled programs are kept on disk: a second run skips most compilation
print(f"deepens {deepens.__version__}, JAX {jax.__version__} on {jax.devices()[0].platform}; "
      f"{'quick mode (DEEPENS_QUICK=1)' if QUICK else 'full settings'}")
'''


# ----------------------------------------------------------------------------------------------------------
# Part I: deep ensembles
# ----------------------------------------------------------------------------------------------------------

PART1 = [
    md('''
# Deep ensembles, Part I: scoring rules, adversarial training, ensembles

This notebook walks through the practical on *Simple and Scalable Predictive Uncertainty Estimation using
Deep Ensembles* (Lakshminarayanan, Pritzel & Blundell, NeurIPS 2017) with the `deepens` library.
The recipe has three ingredients:

1. train each network on a **proper scoring rule** (here the negative log-likelihood), so that it predicts a
   whole distribution, not only a point;
2. optionally, smooth the predictions with **adversarial training** (the fast gradient sign method);
3. train **M networks** from different random initialisations and data orders, and use their uniform mixture.

We first check the losses against `scipy`, then look at adversarial examples on the toy regression, train the
four regression variants of the practical, move to the three-arm spirals and the split of uncertainty into
its *data* and *knowledge* parts, and end with calibration and the discussion questions, each answered from a
number or a figure computed here.

Set `DEEPENS_QUICK=1` in the environment to run everything small (about a minute on a laptop).
'''),
    code(SETUP),
    code('''
if QUICK:
    REG_STEPS, SPIRAL_POINTS, SPIRAL_EPOCHS, GRID = 600, 300, 100, 100
else:  # the practical's settings (GUIDE section 3)
    REG_STEPS, SPIRAL_POINTS, SPIRAL_EPOCHS, GRID = 600, 1000, 300, 150
REG = dict(hidden=(10, 6, 30), learning_rate=0.08, epochs=REG_STEPS, progress=False)  # full batch: epochs = steps
SPIRAL = dict(head="categorical", hidden=(150, 150), learning_rate=0.1, weight_decay=1e-3,
              epochs=SPIRAL_EPOCHS, progress=False)
'''),
    md(r'''
## 1. Proper scoring rules

A *scoring rule* $S(p, y)$ says how good a predictive distribution $p$ was once we see the outcome $y$ (here:
lower is better, a loss). If the outcomes really come from a distribution $q$, the expected score of a
prediction $p$ is $\mathbb{E}_{y \sim q}\, S(p, y)$. The rule is **proper** when no $p$ scores better in
expectation than the truth, $\mathbb{E}_q S(q, y) \le \mathbb{E}_q S(p, y)$ for all $p$; *strictly* proper
when equality forces $p = q$. Training on a proper rule therefore rewards honesty: a network cannot lower its
expected loss by claiming to be more (or less) certain than it is.

**The logarithmic score** $S(p, y) = -\log p(y)$ is strictly proper. Its expectation splits as
$$\mathbb{E}_q[-\log p(y)] = \underbrace{\mathbb{E}_q[-\log q(y)]}_{H(q)} +
\underbrace{\mathbb{E}_q\!\left[\log \tfrac{q(y)}{p(y)}\right]}_{\mathrm{KL}(q\,\|\,p)\ \ge\ 0},$$
and the KL divergence vanishes only at $p = q$.

**Gaussian NLL.** A regression network outputs a mean $\mu(x)$ and a raw scale $\rho(x)$; the standard
deviation is $\sigma = \mathrm{softplus}(\rho) + 10^{-6}$ so that it is always positive. With
$p(y) = (2\pi\sigma^2)^{-1/2} \exp(-(y-\mu)^2 / 2\sigma^2)$, taking $-\log$ gives
$$-\log p(y) = \tfrac12 \log(2\pi\sigma^2) + \frac{(y-\mu)^2}{2\sigma^2}.$$
The first term punishes wide predictions, the second punishes errors in units of the predicted spread: the
network can only afford a small $\sigma$ where it is accurate. With $\sigma$ held fixed this is the squared
error plus a constant, so MSE is the special case that never learns a variance.

**Laplace NLL.** With $p(y) = (2b)^{-1} \exp(-|y - \mu| / b)$ (scale $b$, variance $2b^2$),
$$-\log p(y) = \log(2b) + \frac{|y-\mu|}{b},$$
the absolute error in units of $b$: its minimiser in $\mu$ is the median rather than the mean, and its tails
are heavier, so an outlier costs less.

**Classification.** For logits $z$ and class $y$, $-\log \mathrm{softmax}(z)_y = \mathrm{logsumexp}(z) - z_y$
(computed that way, never as the log of a rounded softmax). The **Brier score**
$\sum_k (p_k - \mathbb{1}[k = y])^2$ is proper too.

Each formula against `scipy`, on random arguments:
'''),
    code('''
from scipy import special, stats
from deepens import losses

rng = np.random.default_rng(0)
mu, scale, y = rng.normal(0, 3, 1000), rng.uniform(0.1, 3.0, 1000), rng.normal(0, 3, 1000)
logits, labels = rng.normal(0, 2, (1000, 5)), rng.integers(0, 5, 1000)
onehot = np.eye(5)[labels]
checks = {
    "Gaussian NLL": (losses.gaussian_nll(mu, scale, y), -stats.norm.logpdf(y, loc=mu, scale=scale)),
    "Laplace NLL": (losses.laplace_nll(mu, scale, y), -stats.laplace.logpdf(y, loc=mu, scale=scale)),
    "categorical NLL": (losses.categorical_nll(logits, labels), -special.log_softmax(logits, axis=1)[np.arange(1000), labels]),
    "Brier (summed over classes)": (losses.brier_score(logits, labels), ((special.softmax(logits, axis=1) - onehot) ** 2).sum(1)),
}
for name, (ours, reference) in checks.items():
    error = np.max(np.abs(np.asarray(ours) - reference) / (1 + np.abs(reference)))
    print(f"{name:<28} largest relative difference from scipy: {error:.1e}")
    assert error < 1e-5, name
'''),
    md(r'''
Properness, seen numerically: draw many $y$ from $q = \mathcal N(0, 2^2)$ and score predictions
$\mathcal N(0, \sigma^2)$ for a range of $\sigma$. The expected NLL is lowest at the true $\sigma = 2$. For
contrast, the *linear score* $-p(y)$ (reward the density at the outcome) looks reasonable but is improper: it
is lowest for a prediction far more confident than the truth.
'''),
    code('''
y_q = rng.normal(0.0, 2.0, 50_000)
sigmas = np.linspace(0.3, 5.0, 95)
# scipy's densities, which the cell above showed equal to deepens' losses
expected_nll = [float(np.mean(-stats.norm.logpdf(y_q, 0.0, s))) for s in sigmas]
expected_linear = [float(np.mean(-stats.norm.pdf(y_q, 0.0, s))) for s in sigmas]
best_nll, best_linear = sigmas[np.argmin(expected_nll)], sigmas[np.argmin(expected_linear)]

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].plot(sigmas, expected_nll)
axes[0].axvline(2.0, color="tab:red", ls="--", label="true sigma = 2")
axes[0].set(title=f"log score (proper): best sigma {best_nll:.2f}", xlabel="predicted sigma", ylabel="expected NLL")
axes[1].plot(sigmas, expected_linear, color="tab:orange")
axes[1].axvline(2.0, color="tab:red", ls="--", label="true sigma = 2")
axes[1].set(title=f"linear score -p(y) (improper): best sigma {best_linear:.2f}", xlabel="predicted sigma",
            ylabel="expected score")
for ax in axes:
    ax.legend()
plt.tight_layout()
plt.show()
''', figure=True),
    md(r'''
## 2. Adversarial training (fast gradient sign method)

An adversarial example moves an input a little in the direction that increases the loss most. The fast
gradient sign method takes one step of size $\epsilon$ along the sign of the input gradient,
$$x' = x + \epsilon\, \mathrm{sign}\big(\nabla_x\, \ell(\theta, x, y)\big),$$
and adversarial training minimises $\tfrac12\,[\ell(\theta, x, y) + \ell(\theta, x', y)]$: the network must
also fit points just beside the data, which smooths the predictive distribution near the training inputs.
In `deepens` the step is absolute (`FGSM(eps, relative=False)`, the practical's choice: 0.08 on the cubic)
or a fraction of each feature's range (`FGSM(0.01)`, the paper's); inputs are never clamped.

The toy regression: 40 points, $x \sim U(-4, 4)$, $y = x^3 + \mathcal N(0, 3^2)$, and a 1-10-6-30-2 network
(a Gaussian head: mean and scale) trained with Adam at 0.08 for 600 full-batch steps.
'''),
    code('''
from deepens import FGSM
from deepens.adversarial import fgsm_perturb

x, y = toy.cubic(40, seed=0)
x_test, y_test = toy.cubic(2000, seed=1)
EPS = 0.08
# "One network" is member 0 of the ensemble of 6: one training program instead of two. (A fit with
# members=1 starts from the same weights and data order; float rounding in the batched arithmetic makes
# the two drift apart over 600 steps at this learning rate, a reminder of how much one network varies.)
ensemble6 = deepens.fit(x, y, head="gaussian", members=6, seed=0, **REG)
one = ensemble6.select([0])

# The loss of the one network at fixed parameters, as a function of its inputs: (40, 1) -> (40,).
params, state = jax.tree.map(lambda leaf: leaf[0], (one.params, one.state))
def loss_at(inputs):
    outputs, _ = one.model.apply(params, state, inputs, False)
    return one.head.nll(outputs, y[:, None])

x_adv = np.asarray(fgsm_perturb(loss_at, x, EPS))
loss_clean, loss_adv = np.asarray(loss_at(x)), np.asarray(loss_at(x_adv))
print(f"every point moved by exactly eps: {np.allclose(np.abs(x_adv - x), EPS)}; "
      f"the loss rose at {np.mean(loss_adv > loss_clean):.0%} of the points "
      f"(mean {loss_clean.mean():.3f} -> {loss_adv.mean():.3f})")
'''),
    code('''
grid = np.linspace(-4.5, 4.5, 300, dtype=np.float32)[:, None]
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
axes[0].plot(grid[:, 0], np.asarray(one.predict(grid).mean), color="0.3", label="network mean")
axes[0].scatter(x[:, 0], y, s=18, color="black", zorder=3, label="x (training points)")
axes[0].scatter(x_adv[:, 0], y, s=18, facecolors="none", edgecolors="tab:red", zorder=3, label=f"x' (eps = {EPS})")
for a, b, t in zip(x[:, 0], x_adv[:, 0], y):
    axes[0].annotate("", xy=(b, t), xytext=(a, t), arrowprops=dict(arrowstyle="->", color="tab:red", lw=0.8))
axes[0].set(title="FGSM moves each input along the sign of the loss gradient", xlabel="x", ylabel="y")
inset = axes[0].inset_axes([0.06, 0.5, 0.36, 0.45])
zoom = (x[:, 0] > 2.0) & (x[:, 0] < 3.5)
inset.plot(grid[:, 0], np.asarray(one.predict(grid).mean), color="0.3")
inset.scatter(x[zoom, 0], y[zoom], s=18, color="black", zorder=3)
inset.scatter(x_adv[zoom, 0], y[zoom], s=18, facecolors="none", edgecolors="tab:red", zorder=3)
inset.set_xlim(2.0, 3.5)
inset.set_ylim(y[zoom].min() - 4, y[zoom].max() + 4)
inset.set_title("zoom", fontsize=8)
axes[0].legend(loc="lower right", fontsize=8)
axes[1].scatter(loss_clean, loss_adv, s=14)
low, high = min(loss_clean.min(), loss_adv.min()), max(loss_clean.max(), loss_adv.max())
axes[1].plot([low, high], [low, high], color="0.5", ls="--", label="no change")
axes[1].set(title="per-point NLL: clean x against adversarial x'", xlabel="NLL at x", ylabel="NLL at x'")
axes[1].legend()
plt.tight_layout()
plt.show()
''', figure=True),
    md(r'''
## 3. The toy regression: one network, FGSM, an ensemble of 6, and both

The practical's four runs, plus a Laplace ensemble. Members of an ensemble differ only by their random
initialisation and data order (here the data are the full batch, so only by initialisation); all of them are
trained in one compiled program, and the single networks are member 0 of each ensemble. The ensemble's prediction is the uniform mixture of its members, summarised
by its mean and variance:
$$\mu_* = \tfrac1M \textstyle\sum_m \mu_m, \qquad
\sigma_*^2 = \tfrac1M \sum_m (\sigma_m^2 + \mu_m^2) - \mu_*^2 .$$
Thin coloured lines are the members (mean +-1 std), grey bands the ensemble's +-1 and +-3 std, the dashed
red line the truth $x^3$. Test scores are on 2,000 fresh points from the same generator (inside $[-4, 4]$).
'''),
    code('''
ensemble6_fgsm = deepens.fit(x, y, head="gaussian", members=6, seed=0, adversarial=FGSM(EPS, relative=False), **REG)
fits = {
    "one network": one,                                   # member 0 of each ensemble (see section 2)
    "one network + FGSM": ensemble6_fgsm.select([0]),
    "ensemble of 6": ensemble6,
    "ensemble of 6 + FGSM": ensemble6_fgsm,
    "laplace, ensemble of 6": deepens.fit(x, y, head="laplace", members=6, seed=0, **REG),
}
runs = list(fits)[:4]
rows = []
for name, ensemble in fits.items():
    p = ensemble.predict(x_test)
    rows.append({"run": name, "members": ensemble.members, "test NLL": float(np.mean(p.nll(y_test))),
                 "test RMSE": metrics.rmse(y_test, p.mean)})
regression_table = pd.DataFrame(rows).set_index("run")
print(f"training seconds (all members together, after compiling): ensemble {ensemble6.timings.train_s:.2f}, "
      f"with FGSM {ensemble6_fgsm.timings.train_s:.2f}")
regression_table.round(3)
'''),
    code('''
fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
for ax, name in zip(axes.ravel(), runs):
    plots.regression_panel(ax, fits[name], x, y, truth=toy.cubic_truth,
                           title=f"{name}: test NLL {regression_table.loc[name, 'test NLL']:.2f}")
axes[0, 0].legend(fontsize=8, loc="upper left")
plt.tight_layout()
plt.show()
''', figure=True),
    md(r'''
**Where does the uncertainty come from?** The mixture variance splits into the mean of the members'
variances (*aleatoric*: the noise each member sees in the data) and the variance of the members' means
(*epistemic*: their disagreement, which more data would remove):
$\sigma_*^2 = \underbrace{\tfrac1M\sum_m \sigma_m^2}_{\text{aleatoric}} +
\underbrace{\tfrac1M\sum_m (\mu_m - \mu_*)^2}_{\text{epistemic}}$. We check the identity and the moment-matching
formula by hand, then plot both parts across $x \in [-6, 6]$; the training inputs lie in $[-4, 4]$ (shaded).
'''),
    code('''
wide = np.linspace(-6, 6, 400, dtype=np.float32)[:, None]
p6 = fits["ensemble of 6"].predict(wide)
means, variances = np.asarray(p6.member_means, np.float64), np.asarray(p6.member_variances, np.float64)
by_hand = np.mean(variances + means**2, axis=0) - np.mean(means, axis=0) ** 2
u = p6.uncertainty
print("moment-matched variance = mean(var_m + mu_m^2) - mu*^2:",
      np.allclose(by_hand, np.asarray(p6.variance), rtol=1e-3, atol=1e-2))
print("total = aleatoric + epistemic:", np.allclose(np.asarray(u.total), np.asarray(u.aleatoric + u.epistemic)))
print("an ensemble of one has no epistemic part:",
      float(np.max(np.asarray(fits["one network"].predict(wide).uncertainty.epistemic))) == 0.0)

inside = np.abs(wide[:, 0]) <= 4
fig, ax = plt.subplots(figsize=(8, 3.6))
ax.axvspan(-4, 4, color="0.9", label="training inputs")
ax.plot(wide[:, 0], np.sqrt(np.asarray(u.aleatoric)), label="aleatoric std (mean member variance)")
ax.plot(wide[:, 0], np.sqrt(np.asarray(u.epistemic)), label="epistemic std (spread of member means)")
ax.axhline(3.0, color="tab:red", ls=":", label="true noise std 3")
ax.set(yscale="log", xlabel="x", ylabel="std", title="ensemble of 6: the two parts of the predictive std")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
''', figure=True),
    md(r'''
## 4. Classification on three spirals

Three interleaved spiral arms (1,000 points each in the practical, noise 0.3), a 2-150-150-3 network trained
on the categorical NLL with Adam at 0.1 and weight decay $10^{-3}$. The ensemble's class probabilities are the
average of the members' probabilities, and its uncertainty (in nats) splits in the same way as in regression:

- **total** $= H\big(\tfrac1M\sum_m p_m\big)$, the entropy of the averaged prediction;
- **data** (aleatoric) $= \tfrac1M\sum_m H(p_m)$, the members' average entropy: high where the classes overlap;
- **knowledge** (epistemic) $=$ total $-$ data, the mutual information between the label and the member,
  $\ge 0$ and zero when all members agree: high where the members disagree, that is away from the data.

Each figure: the data, the predicted class (faded where the ensemble is unsure), data uncertainty and
knowledge uncertainty on a grid around the data.
'''),
    code('''
xs, ys = toy.spirals(SPIRAL_POINTS, noise=0.3, seed=0)
xs_test, ys_test = toy.spirals(SPIRAL_POINTS, noise=0.3, seed=1)
ensemble4 = deepens.fit(xs, ys, members=4, seed=0, **SPIRAL)
spiral_fits = {
    "one network": ensemble4.select([0]),
    "ensemble of 4": ensemble4,
    "ensemble of 4 + FGSM": deepens.fit(xs, ys, members=4, seed=0, adversarial=FGSM(0.02, relative=False), **SPIRAL),
}
rows = []
for name, ensemble in spiral_fits.items():
    scores = metrics.evaluate(ensemble.predict(xs_test), ys_test)
    rows.append({"run": name, **{k: scores[k] for k in ("accuracy", "nll", "brier_summed", "ece")}})
spiral_table = pd.DataFrame(rows).set_index("run")
spiral_table.round(4)
'''),
    code('''
for name, ensemble in spiral_fits.items():
    display(plots.classification_figure(ensemble, xs, ys, resolution=GRID,
                                        title=f"spirals, {name}: test accuracy {spiral_table.loc[name, 'accuracy']:.3f}"))
''', figure=True),
    md(r'''
**The decomposition, checked by hand.** From the members' probabilities on the grid, with numpy only: the
entropy of the mean, the mean of the entropies, their difference, and the same difference written as the
average KL divergence of each member from the mean (the Jensen-Shannon divergence of the members).
'''),
    code('''
xx, yy, points = plots.grid_over(xs, GRID, 0.5)
prediction = spiral_fits["ensemble of 4"].predict(points)
pm = np.asarray(prediction.member_probs, np.float64)              # (M, N, K)
mean_p = pm.mean(axis=0)
H = lambda p: -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
total, data = H(mean_p), H(pm).mean(axis=0)
kl_from_mean = np.sum(np.where(pm > 0, pm * (np.log(np.where(pm > 0, pm, 1.0)) - np.log(mean_p)), 0.0), axis=-1).mean(0)
u = prediction.uncertainty
print("total = entropy of the mean:    ", np.allclose(u.total, total, atol=1e-5))
print("data = mean of the entropies:   ", np.allclose(u.data, data, atol=1e-5))
print("knowledge = total - data:       ", np.allclose(u.knowledge, total - data, atol=1e-5))
print("knowledge = mean KL from mean:  ", np.allclose(u.knowledge, kl_from_mean, atol=1e-5))
print("knowledge >= 0 everywhere:      ", bool(np.all(np.asarray(u.knowledge) >= 0)))
print("one network: knowledge is 0:    ", float(np.max(spiral_fits["one network"].predict(points).uncertainty.knowledge)) == 0.0)
'''),
    md(r'''
## 5. Calibration

A classifier is *calibrated* when, among the inputs it gives confidence 0.8, it is right 80% of the time. The
reliability diagram bins the test points by confidence and compares each bin's accuracy with its mean
confidence; the expected calibration error (ECE) is the gap averaged over bins, weighted by their counts. For
regression the analogue is the probability integral transform: the predictive CDF at each observation is
uniform on [0, 1] when the predictive distributions are right, so every central interval holds its share.
'''),
    code('''
for name in ("one network", "ensemble of 4"):
    reliability = metrics.reliability_diagram(ys_test, spiral_fits[name].predict(xs_test).probs, bins=10)
    display(plots.reliability_figure(reliability, title=f"spirals, {name}"))
''', figure=True),
    code('''
pit_values = {name: np.asarray(fits[name].predict(x_test).cdf(y_test)) for name in ("one network", "ensemble of 6")}
for name, values in pit_values.items():
    coverage = metrics.central_coverage(values, (0.5, 0.9))
    display(plots.regression_calibration_figure(
        values, title=f"cubic, {name}: 50% interval holds {coverage[0]:.0%}, 90% holds {coverage[1]:.0%}"))
''', figure=True),
    md(r'''
## 6. Discussion questions

Each answer below is computed from the runs above, so it stays true to what this notebook did (rerun it
with other seeds or settings and the sentences follow the numbers).

**Q1. Why train on a proper scoring rule rather than on the squared error?**
'''),
    code('''
print(f"Under the log score the best predicted sigma was {best_nll:.2f} (truth 2.00); under the improper linear "
      f"score it was {best_linear:.2f}: an improper rule rewards overconfidence. The squared error fits only a "
      "mean and has no sigma at all: an ensemble trained on it can express only its members' disagreement.")
'''),
    md('**Q2. Does the ensemble know where it has not seen data? Compare its predictive std inside and outside the training range.**'),
    code('''
rows = []
for name in runs:
    std = np.asarray(fits[name].predict(wide).std)
    rows.append({"run": name, "mean std inside [-4, 4]": std[inside].mean(), "mean std at |x| > 5": std[np.abs(wide[:, 0]) > 5].mean()})
growth = pd.DataFrame(rows).set_index("run")
growth["ratio"] = growth["mean std at |x| > 5"] / growth["mean std inside [-4, 4]"]
display(growth.round(2))
epistemic_std = np.sqrt(np.asarray(p6.uncertainty.epistemic))
e_in, e_out = epistemic_std[inside].mean(), epistemic_std[np.abs(wide[:, 0]) > 5].mean()
print(f"The ensemble of 6's std grows {growth.loc['ensemble of 6', 'ratio']:.1f}-fold beyond |x| = 5, "
      f"against {growth.loc['one network', 'ratio']:.1f}-fold for one network; its epistemic std goes from "
      f"{e_in:.1f} inside the data to {e_out:.1f} outside: the members agree where they were trained and "
      "disagree where they extrapolate.")
assert growth.loc["ensemble of 6", "ratio"] > 2 and e_out > 2 * e_in
'''),
    md('**Q3. What did adversarial training change on this toy problem?**'),
    code('''
nll = regression_table["test NLL"]
for base in ("one network", "ensemble of 6"):
    before, after = nll[base], nll[base + " + FGSM"]
    print(f"{base}: test NLL {before:.3f} without FGSM, {after:.3f} with it "
          f"({'better' if after < before else 'worse'} by {abs(after - before):.3f} nats).")
fgsm_gain, ensemble_gain = nll["one network"] - nll["one network + FGSM"], nll["one network"] - nll["ensemble of 6"]
print(f"For one network, FGSM lowered the test NLL by {fgsm_gain:.3f} and ensembling by {ensemble_gain:.3f}: "
      f"here {'FGSM' if fgsm_gain > ensemble_gain else 'ensembling'} helped more. With 40 points and one seed, "
      "differences of a tenth of a nat are weak evidence (rerun with seed=1 and compare); the paper's case for "
      "FGSM rests on its larger benchmarks. Look at the figure of section 3 for what it changes: FGSM widens the "
      "bands beyond the data (the table of Q2 measures it).")
'''),
    md('**Q4. How many members are enough?** An ensemble of the first $m$ members is `ensemble.select(range(m))`, so no retraining is needed.'),
    code('''
# The first m members' mixture, from the members' predictions (scored on the host, nothing recompiled).
p_cubic, p_spiral = fits["ensemble of 6"].predict(x_test), spiral_fits["ensemble of 4"].predict(xs_test)
mu_m, sd_m = np.asarray(p_cubic.member_means), np.sqrt(np.asarray(p_cubic.member_variances))
probs_m = np.asarray(p_spiral.member_probs)
cubic_curve = [float(np.mean(metrics.mixture_nll(y_test, mu_m[:m], sd_m[:m]))) for m in range(1, 7)]
spiral_curve = [float(np.mean(metrics.categorical_nll(ys_test, probs_m[:m].mean(axis=0)))) for m in range(1, 5)]
# (ensemble.select(range(m)) gives the same ensembles as objects, to predict with.)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].plot(range(1, 7), cubic_curve, marker="o")
axes[0].set(title="cubic: test NLL against M", xlabel="members M", ylabel="test NLL")
axes[1].plot(range(1, 5), spiral_curve, marker="o")
axes[1].set(title="spirals: test NLL against M", xlabel="members M", ylabel="test NLL")
plt.tight_layout()
plt.show()
share = lambda curve, m: (curve[0] - curve[m - 1]) / (curve[0] - curve[-1])   # fraction of the gain reached at m
print(f"Cubic: NLL {cubic_curve[0]:.3f} with one member, {cubic_curve[-1]:.3f} with six; three members reach "
      f"{share(cubic_curve, 3):.0%} of that gain. Spirals: {spiral_curve[0]:.3f} with one, {spiral_curve[-1]:.3f} "
      f"with four; two members reach {share(spiral_curve, 2):.0%} of it.")
''', figure=True),
    md('**Q5. Where is each kind of uncertainty high on the spirals, and which one flags inputs unlike the training data?**'),
    code('''
from scipy.spatial import cKDTree

distance = cKDTree(xs).query(points)[0]                         # grid point to nearest training point
near, far = distance < 0.05, distance > 0.3
u4 = spiral_fits["ensemble of 4"].predict(points).uncertainty
data_u, knowledge_u = np.asarray(u4.data), np.asarray(u4.knowledge)
print(f"data uncertainty: mean {data_u[near].mean():.3f} nats near the data, {data_u[far].mean():.3f} far from it")
print(f"knowledge uncertainty: mean {knowledge_u[near].mean():.3f} nats near the data, {knowledge_u[far].mean():.3f} far from it "
      f"({knowledge_u[far].mean() / max(knowledge_u[near].mean(), 1e-12):.1f}x)")
print(f"fraction of far grid points with knowledge > 0.1 nats: {np.mean(knowledge_u[far] > 0.1):.0%}; near: {np.mean(knowledge_u[near] > 0.1):.0%}")
print("Data uncertainty is high where the arms overlap (the boundaries inside the data); knowledge uncertainty is "
      "high away from the data, along the directions where the members extend their boundaries differently. "
      "Far out in a region all members give to one class it stays near zero: ReLU networks extrapolate with "
      "confidence, and an ensemble only helps where its members disagree.")
assert knowledge_u[far].mean() > 2 * knowledge_u[near].mean()
'''),
    md('**Q6. Is the ensemble better calibrated than one network?**'),
    code('''
one_row, ens_row = spiral_table.loc["one network"], spiral_table.loc["ensemble of 4"]
print(f"spirals: ECE {one_row['ece']:.4f} for one network, {ens_row['ece']:.4f} for the ensemble "
      f"(the {'ensemble' if ens_row['ece'] < one_row['ece'] else 'one network'} is lower); "
      f"test NLL {one_row['nll']:.4f} against {ens_row['nll']:.4f}.")
for name in ("one network", "ensemble of 4"):
    p = spiral_fits[name].predict(xs_test)
    confidence, accuracy = float(np.mean(p.confidence)), float(np.mean(np.asarray(p.label) == ys_test))
    print(f"{name}: mean confidence {confidence:.3f}, accuracy {accuracy:.3f}: "
          f"{'underconfident' if confidence < accuracy else 'overconfident'} by {abs(confidence - accuracy):.3f} on average.")
# How much does the ECE itself vary with the test sample? A bootstrap over test points:
boot = np.random.default_rng(0)
probs_test = np.asarray(spiral_fits["ensemble of 4"].predict(xs_test).probs)
draws = [boot.integers(0, len(ys_test), len(ys_test)) for _ in range(200)]
ece_spread = np.std([metrics.expected_calibration_error(ys_test[i], probs_test[i]) for i in draws])
print(f"bootstrap std of the ensemble's ECE over resampled test sets: {ece_spread:.4f}; differences in ECE "
      "smaller than about twice that are noise. The NLL, a proper score, weighs sharpness and calibration together.")
area = {name: metrics.miscalibration_area(values) for name, values in pit_values.items()}
print(f"cubic: miscalibration area (0 is perfect) {area['one network']:.3f} for one network, {area['ensemble of 6']:.3f} for the ensemble.")
'''),
    md('''
**Q7. Laplace or Gaussian?** The noise in this toy problem is Gaussian, so the Gaussian head is the right
family; the Laplace head pays for its heavier tails and sharper peak (compare the rows of the table in
section 3):
'''),
    code('''
g, l = regression_table.loc["ensemble of 6", "test NLL"], regression_table.loc["laplace, ensemble of 6", "test NLL"]
print(f"ensemble of 6: Gaussian test NLL {g:.3f}, Laplace {l:.3f}: the {'Gaussian' if g < l else 'Laplace'} head scores better here.")
'''),
    md('''
Next: `practical_part2.ipynb` puts several members inside one network (MIMO and BatchEnsemble) and weighs
what they cost against the deep ensemble.
'''),
]


# ----------------------------------------------------------------------------------------------------------
# Part II: ensembles inside one network
# ----------------------------------------------------------------------------------------------------------

PART2 = [
    md(r'''
# Deep ensembles, Part II: ensembles inside one network (MIMO and BatchEnsemble)

A deep ensemble of $M$ networks costs $M$ times one network: $M\times$ the parameters to store, $M\times$ the
arithmetic to train, and $M\times$ the arithmetic to predict. Two methods keep several members inside *one*
network and predict through the same mixture (so the same uncertainty decomposition as in Part I):

- **MIMO** (Havasi et al., ICLR 2021, *multi-input multi-output*): the input layer takes $M$ inputs side by
  side (width $M \cdot D$) and the output layer gives $M$ heads; the hidden layers are shared. In training,
  input slot $m$ is filled from its own shuffle of the data, so each subnetwork learns to read its own slot
  and ignore the others. To predict, the same $x$ fills every slot and the $M$ heads are the $M$ members.
  Two knobs: the *input repetition* $\rho$ (the fraction of a batch where all slots see the same row) and the
  *batch repetition* $b$ (each row appears $b$ times per epoch).
- **BatchEnsemble** (Wen et al., ICLR 2020): every layer has one shared weight matrix $W$, and member $m$ uses
  $W \circ (r_m s_m^\top)$, a rank-1 rescaling, computed as $((x \circ r_m) W) \circ s_m$, plus its own bias.

**The cost argument in parameters.** For the 2-150-150-3 spiral network ($D = 2$, $K = 3$) one network has
$(2 \cdot 150 + 150) + (150 \cdot 150 + 150) + (150 \cdot 3 + 3) = 23{,}553$ parameters. A deep ensemble of
$M = 4$ has $4\times$ that. MIMO widens only the first and last layers: $+ (M-1)(D \cdot 150 + 150 \cdot K + K)$.
BatchEnsemble adds $r$, $s$ and a bias per member and layer, $(2 + 150 + 150) + (3 \cdot 150) + (150 + 2\cdot 3)$
per member. The arithmetic is another matter: a BatchEnsemble still runs $M$ forward passes (through shared
weights), MIMO runs one. We measure all of it below: parameters, training seconds, prediction seconds.

All three are `deepens.fit(..., method="ensemble" | "mimo" | "batchensemble")`.
'''),
    code(SETUP),
    code('''
if QUICK:
    SPIRAL_POINTS, SPIRAL_EPOCHS, GRID = 300, 100, 100
else:  # the practical's settings
    SPIRAL_POINTS, SPIRAL_EPOCHS, GRID = 1000, 300, 150
M = 4
SPIRAL = dict(head="categorical", hidden=(150, 150), learning_rate=0.1, weight_decay=1e-3,
              epochs=SPIRAL_EPOCHS, progress=False, seed=0)
xs, ys = toy.spirals(SPIRAL_POINTS, noise=0.3, seed=0)
xs_test, ys_test = toy.spirals(SPIRAL_POINTS, noise=0.3, seed=1)
'''),
    md(r'''
## 1. Four ways to train on the spirals

One network, a deep ensemble of 4, MIMO with 4 subnetworks ($\rho = 0$, $b = 1$) and a BatchEnsemble of 4,
all with the Part I settings. `timings.train_s` is the training program's run time (compilation excluded,
in `timings.compile_s`).
'''),
    code('''
deep = deepens.fit(xs, ys, members=M, method="ensemble", **SPIRAL)
models = {
    "one network": deepens.fit(xs, ys, members=1, **SPIRAL),
    "deep ensemble": deep,
    "MIMO": deepens.fit(xs, ys, members=M, method="mimo", input_repetition=0.0, batch_repetition=1, **SPIRAL),
    "BatchEnsemble": deepens.fit(xs, ys, members=M, method="batchensemble", **SPIRAL),
}
for name, model in models.items():
    print(f"{name:<14} members {model.members}, networks {model.networks}")
'''),
    md(r'''
## 2. What each one costs, and what it buys

Parameters are counted from the trained pytrees. Prediction time is the median of five predictions on a
grid of inputs, after a first call that compiles. Scores are on a fresh test sample.
'''),
    code('''
xx, yy, points = plots.grid_over(xs, GRID, 0.5)

def predict_seconds(model, x, repeats=5):
    jax.block_until_ready(model.predict(x).probs)          # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(model.predict(x).probs)
        times.append(time.perf_counter() - start)
    return float(np.median(times))

rows = []
for name, model in models.items():
    scores = metrics.evaluate(model.predict(xs_test), ys_test)
    rows.append({"method": name, "members": model.members, "parameters": sum(l.size for l in jax.tree.leaves(model.params)),
                 "train s": model.timings.train_s, "predict s": predict_seconds(model, points),
                 "accuracy": scores["accuracy"], "NLL": scores["nll"], "ECE": scores["ece"]})
table = pd.DataFrame(rows).set_index("method")
one_row = table.loc["one network"]
for column in ("parameters", "train s", "predict s"):
    table[column + " / one network"] = table[column] / one_row[column]
print(f"prediction on {len(points)} grid points")
table.round({"train s": 3, "predict s": 4, "accuracy": 4, "NLL": 4, "ECE": 4,
             "parameters / one network": 2, "train s / one network": 2, "predict s / one network": 2})
'''),
    code('''
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
names = list(table.index)
colours = ["0.6", "tab:blue", "tab:orange", "tab:green"]
for ax, column in zip(axes, ("parameters / one network", "train s / one network", "predict s / one network")):
    ax.bar(names, table[column], color=colours)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_title(column)
    ax.tick_params(axis="x", rotation=20)
fig.suptitle(f"cost relative to one network (M = {M})")
plt.tight_layout()
plt.show()
''', figure=True),
    md(r'''
## 3. Their uncertainty, next to the deep ensemble's

The same four panels as in Part I for each method, then the data and knowledge uncertainty of the three side
by side, on one colour scale per row.
'''),
    code('''
for name in ("deep ensemble", "MIMO", "BatchEnsemble"):
    display(plots.classification_figure(models[name], xs, ys, resolution=GRID,
                                        title=f"{name}: test accuracy {table.loc[name, 'accuracy']:.3f}, NLL {table.loc[name, 'NLL']:.3f}"))
''', figure=True),
    code('''
methods = ("deep ensemble", "MIMO", "BatchEnsemble")
uncertainty = {name: models[name].predict(points).uncertainty for name in methods}
fig, axes = plt.subplots(2, 3, figsize=(13, 8.2), layout="constrained")
extent = (xx.min(), xx.max(), yy.min(), yy.max())
for row, kind in enumerate(("data", "knowledge")):
    top = max(float(np.max(getattr(uncertainty[name], kind))) for name in methods)
    for ax, name in zip(axes[row], methods):
        image = ax.imshow(np.asarray(getattr(uncertainty[name], kind)).reshape(xx.shape), origin="lower",
                          extent=extent, vmin=0, vmax=top, cmap="viridis")
        ax.scatter(xs[::10, 0], xs[::10, 1], s=1, c="white", alpha=0.5)
        ax.set_title(f"{name}: {kind} uncertainty")
    fig.colorbar(image, ax=axes[row], label="nats", shrink=0.8)
plt.show()
''', figure=True),
    md(r'''
## 4. MIMO's knobs: input and batch repetition

With $\rho > 0$ part of every batch shows the same row in all slots, so the subnetworks share more of their
features (Havasi et al. found it helps accuracy when the network is small, at some cost in diversity; the
table measures both here); $b > 1$ shows each row several times per epoch with different partners in the
other slots.
'''),
    code('''
from scipy.spatial import cKDTree

mimo_shared = deepens.fit(xs, ys, members=M, method="mimo", input_repetition=0.5, batch_repetition=2, **SPIRAL)
far = cKDTree(xs).query(points)[0] > 0.3            # grid points farther than 0.3 from every training point
rows = []
for name, model in (("MIMO rho=0, b=1", models["MIMO"]), ("MIMO rho=0.5, b=2", mimo_shared), ("deep ensemble", deep)):
    scores = metrics.evaluate(model.predict(xs_test), ys_test)
    u = model.predict(points).uncertainty
    labels = np.argmax(np.asarray(model.predict(points).member_probs), axis=-1)       # (M, grid)
    disagreement = float(np.mean(labels[:, far] != labels[:1, far]))
    rows.append({"model": name, "accuracy": scores["accuracy"], "NLL": scores["nll"],
                 "knowledge far from data": float(np.mean(np.asarray(u.knowledge)[far])),
                 "members disagreeing with member 0, far": disagreement,
                 "train s": model.timings.train_s})
knobs = pd.DataFrame(rows).set_index("model")
knobs.round(4)
'''),
    md(r'''
## 5. Discussion questions

Answered from the numbers computed above.

**Q1. What does each method save against the deep ensemble?**
'''),
    code('''
d = table.loc["deep ensemble"]
for name in ("MIMO", "BatchEnsemble"):
    r = table.loc[name]
    print(f"{name}: {r['parameters'] / d['parameters']:.0%} of the deep ensemble's parameters, "
          f"{r['train s'] / d['train s']:.0%} of its training time and {r['predict s'] / d['predict s']:.0%} of its "
          f"prediction time; test NLL {r['NLL']:.3f} against {d['NLL']:.3f}, accuracy {r['accuracy']:.3f} against {d['accuracy']:.3f}.")
print("BatchEnsemble saves memory (shared weights) but still runs M forward passes; MIMO runs one.")
'''),
    md('**Q2. Do the members inside one network disagree away from the data as much as independent networks do?**'),
    code('''
k = knobs["knowledge far from data"]
print(f"Mean knowledge uncertainty far from the data: deep ensemble {k['deep ensemble']:.3f} nats, MIMO "
      f"{k['MIMO rho=0, b=1']:.3f}, MIMO with rho = 0.5 {k['MIMO rho=0.5, b=2']:.3f}. "
      + ("Sharing inputs made the subnetworks more alike there."
         if k['MIMO rho=0.5, b=2'] < k['MIMO rho=0, b=1'] else
         "Here sharing inputs did not make the subnetworks more alike far from the data."))
be_far = float(np.mean(np.asarray(uncertainty["BatchEnsemble"].knowledge)[far]))
print(f"BatchEnsemble: {be_far:.3f} nats far from the data.")
'''),
    md(r'''
**Q3. When would you still pay for a deep ensemble?** When the best uncertainty matters more than the cost:
compare the NLL and the knowledge maps above; and when the members must be trained or stored separately
(a deep ensemble's members can be trained on different machines and selected afterwards with
`ensemble.select`, which MIMO and BatchEnsemble cannot do).
'''),
]


# ----------------------------------------------------------------------------------------------------------
# Your own data
# ----------------------------------------------------------------------------------------------------------

YOUR_DATA = [
    md(r'''
# Deep ensembles on your own data

A practitioner's walk-through: a table of numbers in a CSV file, a column to predict, and the questions that
follow a prediction. *How sure is it? Do its 90% intervals hold 90% of new values? Which rows look unlike
anything it was trained on?* We use scikit-learn's bundled diabetes data (442 patients, 10 measurements, a
disease-progression score one year later; nothing is downloaded) and write it to a CSV first, so every step
below is what you would run on your own file: replace the cell marked **your data**.

Covered: the scikit-learn estimators `DeepEnsembleRegressor` and `DeepEnsembleClassifier`, calibrated
intervals and their coverage, calibration plots, the split of the uncertainty, saving and loading, and the
`deepens` command line on the same CSV files.
'''),
    code(SETUP),
    code('''
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from IPython.display import Image
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.model_selection import train_test_split

from deepens import DeepEnsembleClassifier, DeepEnsembleRegressor

EPOCHS = 40 if QUICK else 300               # passes over the data (minibatches of 100 rows)
WORK = Path(tempfile.mkdtemp(prefix="deepens-your-data-"))   # every file this notebook writes goes here
print("writing to", WORK)
'''),
    md(r'''
## 1. Your data

**Your data:** replace the first line by `frame = pd.read_csv("your_file.csv")` and `TARGET` by the column
to predict. The split keeps a quarter of the rows aside as a test set that no fit below ever sees; we save
both parts as CSV files for the command line in section 6.
'''),
    code('''
frame = load_diabetes(as_frame=True).frame          # your data: frame = pd.read_csv("your_file.csv")
TARGET = "target"                                    # your data: the column to predict

train, test = train_test_split(frame, test_size=0.25, random_state=0)
train.to_csv(WORK / "train.csv", index=False)
test.to_csv(WORK / "test.csv", index=False)
X_train, y_train = train.drop(columns=TARGET), train[TARGET]
X_test, y_test = test.drop(columns=TARGET), test[TARGET]
print(f"{len(train)} training rows, {len(test)} test rows, {X_train.shape[1]} features")
frame.describe().T.round(3)
'''),
    md(r'''
## 2. The estimator

`DeepEnsembleRegressor` standardises inputs and targets with the training statistics, trains $M = 5$ networks
on the Gaussian NLL, and answers in the target's own units. By default (`calibration="auto"`) it holds out
20% of the training rows and fits *split-conformal* intervals on them: the score of a held-out row is
$|y - \mu| / \sigma$, and the interval at level $\alpha$ is $\mu \pm q\,\sigma$ with $q$ the
$\lceil (n + 1)\alpha \rceil$-th smallest score, which covers at least $\alpha$ of new rows drawn like the
training rows. `calibration=None` trains on every row and gives the raw mixture's intervals. We fit both.
'''),
    code('''
settings = dict(members=5, hidden_layer_sizes=(50,), epochs=EPOCHS, learning_rate=0.01, random_state=0)
model = DeepEnsembleRegressor(**settings).fit(X_train, y_train)
raw = DeepEnsembleRegressor(**settings, calibration=None).fit(X_train, y_train)
print("calibration:", model.calibration_)

mean, std = model.predict(X_test, return_std=True)
lower, upper = model.predict_interval(X_test, level=0.9)
inside = (lower <= y_test) & (y_test <= upper)
print(f"first test row: predicted {mean[0]:.1f} +- {std[0]:.1f}, 90% interval [{lower[0]:.1f}, {upper[0]:.1f}], "
      f"observed {y_test.iloc[0]:.1f}")
print(f"the 90% intervals hold {inside.mean():.0%} of the {len(y_test)} test values")
scores = pd.DataFrame({"calibrated (default)": model.evaluate(X_test, y_test), "calibration=None": raw.evaluate(X_test, y_test)})
scores.round(3)
'''),
    md(r'''
## 3. Do the intervals cover what they claim?

For every level from 5% to 95%, the fraction of test values inside the central interval. A calibrated model
lies on the diagonal; below it, intervals are too narrow. Then the intervals themselves, test rows sorted by
their prediction.
'''),
    code('''
levels = np.linspace(0.05, 0.95, 19)
calibrated = [float(np.mean((lo <= y_test) & (y_test <= hi))) for lo, hi in (model.predict_interval(X_test, level=a) for a in levels)]
# The raw mixture's central interval at level a holds y exactly when its CDF at y lies in [(1-a)/2, (1+a)/2].
covered = {"calibrated (split conformal)": calibrated,
           "calibration=None (raw mixture)": metrics.central_coverage(raw.predict_cdf(X_test, y_test), levels)}

fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
axes[0].plot([0, 1], [0, 1], color="0.5", ls="--", label="calibrated")
for name, values in covered.items():
    axes[0].plot(levels, values, marker="o", ms=3, label=name)
axes[0].set(xlabel="interval level", ylabel="fraction of test values inside", title="interval coverage on the test rows")
axes[0].legend(fontsize=8)
order = np.argsort(mean)
rank = np.arange(len(order))
axes[1].fill_between(rank, lower[order], upper[order], color="tab:blue", alpha=0.25, label="90% interval")
axes[1].plot(rank, mean[order], color="tab:blue", lw=1, label="predicted mean")
axes[1].scatter(rank, y_test.to_numpy()[order], s=8, c=np.where(inside.to_numpy()[order], "black", "tab:red"),
                zorder=3, label="observed (red: outside)")
axes[1].set(xlabel="test rows, sorted by prediction", ylabel=TARGET, title=f"90% intervals: {inside.mean():.0%} inside")
axes[1].legend(fontsize=8, loc="upper left")
plt.tight_layout()
plt.show()
''', figure=True),
    md(r'''
The probability integral transform of the ensemble's whole predictive distribution (the mixture's CDF at
each observed value; uniform when the distribution is right), from `predict_cdf`:
'''),
    code('''
display(plots.regression_calibration_figure(model.predict_cdf(X_test, y_test), title="diabetes: the mixture's calibration on the test rows"))
''', figure=True),
    md(r'''
## 4. Which rows is it unsure about, and why?

`predict_uncertainty` splits each row's predictive variance into the *aleatoric* part (the noise the members
expect) and the *epistemic* part (their disagreement). Rows unlike the training data raise the second: we make
some by moving test rows far outside the range of the training features (every feature times 4).
'''),
    code('''
u_test = model.predict_uncertainty(X_test)
unusual = X_test * 4.0
u_unusual = model.predict_uncertainty(unusual)
fig, ax = plt.subplots(figsize=(7, 4))
ax.boxplot([np.sqrt(u_test.aleatoric), np.sqrt(u_test.epistemic), np.sqrt(u_unusual.aleatoric), np.sqrt(u_unusual.epistemic)],
           tick_labels=["aleatoric\\ntest rows", "epistemic\\ntest rows", "aleatoric\\nunusual rows", "epistemic\\nunusual rows"])
ax.set(yscale="log", ylabel=f"std ({TARGET} units)", title="the two parts of the predictive std")
plt.tight_layout()
plt.show()
ratio = np.median(np.sqrt(u_unusual.epistemic)) / np.median(np.sqrt(u_test.epistemic))
print(f"median epistemic std: {np.median(np.sqrt(u_test.epistemic)):.1f} on test rows, "
      f"{np.median(np.sqrt(u_unusual.epistemic)):.1f} on the unusual rows ({ratio:.0f}x)")
assert ratio > 2
''', figure=True),
    md(r'''
## 5. A classifier, the same way

`DeepEnsembleClassifier` takes any labels; by default it fits a temperature on held-out rows. On the bundled
breast-cancer data (569 tumours, 30 features, benign or malignant):
'''),
    code('''
Xc, yc = load_breast_cancer(return_X_y=True, as_frame=True)
Xc_train, Xc_test, yc_train, yc_test = train_test_split(Xc, yc, test_size=0.25, random_state=0, stratify=yc)
classifier = DeepEnsembleClassifier(members=5, epochs=EPOCHS, random_state=0).fit(Xc_train, yc_train)
proba = classifier.predict_proba(Xc_test)
print("classes:", classifier.classes_, "| calibration:", classifier.calibration_)
display(pd.Series(classifier.evaluate(Xc_test, yc_test)).round(4).to_frame("test"))
reliability = metrics.reliability_diagram(classifier.encode_labels(yc_test), proba, bins=10)
display(plots.reliability_figure(reliability, title="breast cancer, test rows"))
u = classifier.predict_uncertainty(Xc_test)
print(f"most uncertain test row: total {float(np.max(u.total)):.3f} nats, of which knowledge {float(u.knowledge[np.argmax(u.total)]):.3f}")
''', figure=True),
    md(r'''
## 6. Saving, loading, and the command line

`model.save(folder)` writes JSON and safetensors files (no pickle: loading a model runs no code), and
`deepens.load(folder)` gives back an estimator that predicts exactly the same numbers.
'''),
    code('''
folder = model.save(WORK / "diabetes_model")
loaded = deepens.load(folder)
print(sorted(p.name for p in folder.iterdir()))
print("same predictions after loading:", np.array_equal(loaded.predict(X_test), model.predict(X_test)))
print("same intervals after loading:  ", all(np.array_equal(a, b) for a, b in zip(loaded.predict_interval(X_test), model.predict_interval(X_test))))
'''),
    md(r'''
The same steps from a shell, on the CSV files written in section 1 (in a terminal:
`deepens train train.csv --target target -o model`, and so on):
'''),
    code('''
found = shutil.which("deepens", path=str(Path(sys.executable).parent)) or shutil.which("deepens")
DEEPENS = [found] if found else [sys.executable, "-m", "deepens.cli"]

def deepens_cli(*args):
    result = subprocess.run([*DEEPENS, *map(str, args)], capture_output=True, text=True,
                            env={**os.environ, "NO_COLOR": "1"})  # plain text tables in the notebook
    print(f"$ deepens {' '.join(map(str, args))}")
    print((result.stdout + result.stderr).strip()[-1500:])
    result.check_returncode()

deepens_cli("train", WORK / "train.csv", "--target", TARGET, "--epochs", EPOCHS, "--quiet", "-o", WORK / "cli_model")
deepens_cli("predict", WORK / "cli_model", WORK / "test.csv", "--level", 0.9, "-o", WORK / "predictions.csv")
pd.read_csv(WORK / "predictions.csv").head().round(2)
'''),
    code('''
deepens_cli("evaluate", WORK / "cli_model", WORK / "test.csv", "--out", WORK / "report")
print(sorted(p.name for p in (WORK / "report").iterdir()))
display(Image(filename=str(WORK / "report" / "calibration.png"), width=800))
''', figure=True),
    code('''
shutil.rmtree(WORK)   # keep the files instead by deleting this line
'''),
]


NOTEBOOKS = {
    "practical_part1.ipynb": PART1,
    "practical_part2.ipynb": PART2,
    "your_data.ipynb": YOUR_DATA,
}


def build() -> dict[str, nbformat.NotebookNode]:
    """Every notebook, by file name."""
    return {name: notebook(cells) for name, cells in NOTEBOOKS.items()}


def main() -> None:
    for name, nb in build().items():
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
