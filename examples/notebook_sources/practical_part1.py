"""Part I of the practical: scoring rules, FGSM, the cubic, the spirals, calibration, discussion."""

from notebook_sources.cells import SETUP, code, md

CELLS = [
    md("""
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
"""),
    code(SETUP),
    code("""
if QUICK:
    REG_STEPS, SPIRAL_POINTS, SPIRAL_EPOCHS, GRID = 600, 300, 100, 100
else:  # the practical's settings (GUIDE section 3)
    REG_STEPS, SPIRAL_POINTS, SPIRAL_EPOCHS, GRID = 600, 1000, 300, 150
REG = dict(hidden=(10, 6, 30), learning_rate=0.08, epochs=REG_STEPS, batch_size=None, progress=False)  # full batch: epochs = steps
SPIRAL = dict(head="categorical", hidden=(150, 150), learning_rate=0.1, weight_decay=1e-3, batch_size=None,
              epochs=SPIRAL_EPOCHS, progress=False)
"""),
    md(r"""
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
"""),
    code("""
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
"""),
    md(r"""
Properness, seen numerically: draw many $y$ from $q = \mathcal N(0, 2^2)$ and score predictions
$\mathcal N(0, \sigma^2)$ for a range of $\sigma$. The expected NLL is lowest at the true $\sigma = 2$. For
contrast, the *linear score* $-p(y)$ (reward the density at the outcome) looks reasonable but is improper: it
is lowest for a prediction far more confident than the truth.
"""),
    code(
        """
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
""",
        figure=True,
    ),
    md(r"""
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
"""),
    code("""
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
"""),
    code(
        """
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
""",
        figure=True,
    ),
    md(r"""
## 3. The toy regression: one network, FGSM, an ensemble of 6, and both

The practical's four runs, plus a Laplace ensemble. Members of an ensemble differ only by their random
initialisation and data order (here the data are the full batch, so only by initialisation); all of them are
trained in one compiled program, and the single networks are member 0 of each ensemble. The ensemble's prediction is the uniform mixture of its members, summarised
by its mean and variance:
$$\mu_* = \tfrac1M \textstyle\sum_m \mu_m, \qquad
\sigma_*^2 = \tfrac1M \sum_m (\sigma_m^2 + \mu_m^2) - \mu_*^2 .$$
Thin coloured lines are the members (mean +-1 std), grey bands the ensemble's +-1 and +-3 std, the dashed
red line the truth $x^3$. Test scores are on 2,000 fresh points from the same generator (inside $[-4, 4]$).
"""),
    code("""
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
                 "test RMSE": metrics.rmse(y_test, mean=p.mean)})
regression_table = pd.DataFrame(rows).set_index("run")
print(f"training seconds (all members together, after compiling): ensemble {ensemble6.timings.train_s:.2f}, "
      f"with FGSM {ensemble6_fgsm.timings.train_s:.2f}")
regression_table.round(3)
"""),
    code(
        """
fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
for ax, name in zip(axes.ravel(), runs):
    plots.regression_panel(ax, fits[name], x, y, truth=toy.cubic_truth,
                           title=f"{name}: test NLL {regression_table.loc[name, 'test NLL']:.2f}")
axes[0, 0].legend(fontsize=8, loc="upper left")
plt.tight_layout()
plt.show()
""",
        figure=True,
    ),
    md(r"""
**Where does the uncertainty come from?** The mixture variance splits into the mean of the members'
variances (*aleatoric*: the noise each member sees in the data) and the variance of the members' means
(*epistemic*: their disagreement, which more data would remove):
$\sigma_*^2 = \underbrace{\tfrac1M\sum_m \sigma_m^2}_{\text{aleatoric}} +
\underbrace{\tfrac1M\sum_m (\mu_m - \mu_*)^2}_{\text{epistemic}}$. We check the identity and the moment-matching
formula by hand, then plot both parts across $x \in [-6, 6]$; the training inputs lie in $[-4, 4]$ (shaded).
"""),
    code(
        """
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
""",
        figure=True,
    ),
    md(r"""
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
"""),
    code("""
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
"""),
    code(
        """
for name, ensemble in spiral_fits.items():
    display(plots.classification_figure(ensemble, xs, ys, resolution=GRID,
                                        title=f"spirals, {name}: test accuracy {spiral_table.loc[name, 'accuracy']:.3f}"))
""",
        figure=True,
    ),
    md(r"""
**The decomposition, checked by hand.** From the members' probabilities on the grid, with numpy only: the
entropy of the mean, the mean of the entropies, their difference, and the same difference written as the
average KL divergence of each member from the mean (the Jensen-Shannon divergence of the members).
"""),
    code("""
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
"""),
    md(r"""
## 5. Calibration

A classifier is *calibrated* when, among the inputs it gives confidence 0.8, it is right 80% of the time. The
reliability diagram bins the test points by confidence and compares each bin's accuracy with its mean
confidence; the expected calibration error (ECE) is the gap averaged over bins, weighted by their counts. For
regression the analogue is the probability integral transform: the predictive CDF at each observation is
uniform on [0, 1] when the predictive distributions are right, so every central interval holds its share.
"""),
    code(
        """
for name in ("one network", "ensemble of 4"):
    reliability = metrics.reliability_diagram(ys_test, spiral_fits[name].predict(xs_test).probs, bins=10)
    display(plots.reliability_figure(reliability, title=f"spirals, {name}"))
""",
        figure=True,
    ),
    code(
        """
pit_values = {name: np.asarray(fits[name].predict(x_test).cdf(y_test)) for name in ("one network", "ensemble of 6")}
for name, values in pit_values.items():
    coverage = metrics.central_coverage(values, (0.5, 0.9))
    display(plots.regression_calibration_figure(
        values, title=f"cubic, {name}: 50% interval holds {coverage[0]:.0%}, 90% holds {coverage[1]:.0%}"))
""",
        figure=True,
    ),
    md(r"""
## 6. Discussion questions

Each answer below is computed from the runs above, so it stays true to what this notebook did (rerun it
with other seeds or settings and the sentences follow the numbers).

**Q1. Why train on a proper scoring rule rather than on the squared error?**
"""),
    code("""
print(f"Under the log score the best predicted sigma was {best_nll:.2f} (truth 2.00); under the improper linear "
      f"score it was {best_linear:.2f}: an improper rule rewards overconfidence. The squared error fits only a "
      "mean and has no sigma at all: an ensemble trained on it can express only its members' disagreement.")
"""),
    md(
        "**Q2. Does the ensemble know where it has not seen data? Compare its predictive std inside and outside the training range.**"
    ),
    code("""
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
"""),
    md("**Q3. What did adversarial training change on this toy problem?**"),
    code("""
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
"""),
    md(
        "**Q4. How many members are enough?** An ensemble of the first $m$ members is `ensemble.select(range(m))`, so no retraining is needed."
    ),
    code(
        """
# The first m members' mixture, from the members' predictions (scored on the host, nothing recompiled).
p_cubic, p_spiral = fits["ensemble of 6"].predict(x_test), spiral_fits["ensemble of 4"].predict(xs_test)
mu_m, sd_m = np.asarray(p_cubic.member_means), np.sqrt(np.asarray(p_cubic.member_variances))
probs_m = np.asarray(p_spiral.member_probs)
cubic_curve = [float(np.mean(metrics.mixture_nll(y_test, member_locs=mu_m[:m], member_scales=sd_m[:m]))) for m in range(1, 7)]
spiral_curve = [float(np.mean(metrics.categorical_nll(ys_test, probs=probs_m[:m].mean(axis=0)))) for m in range(1, 5)]
# (ensemble.select(range(m)) gives the same ensembles as objects, to predict with.)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].plot(range(1, 7), cubic_curve, marker="o")
axes[0].set(title="cubic: test NLL against M", xlabel="members M", ylabel="test NLL", xticks=range(1, 7))
axes[1].plot(range(1, 5), spiral_curve, marker="o")
axes[1].set(title="spirals: test NLL against M", xlabel="members M", ylabel="test NLL", xticks=range(1, 5))
plt.tight_layout()
plt.show()
for task, curve in (("cubic", cubic_curve), ("spirals", spiral_curve)):
    steps = -np.diff(curve)                                  # improvement from M to M + 1 members
    best = int(np.argmax(steps))
    print(f"{task}: test NLL for M = 1..{len(curve)}: {', '.join(f'{v:.4f}' for v in curve)}; " + (
        f"the largest improvement, {steps[best]:.4f} nats, is from M = {best + 1} to {best + 2}."
        if steps[best] > 0 else "adding members did not lower it.")
          + f" All {len(curve)} members: {100 * (curve[0] - curve[-1]) / curve[0]:.1f}% below one member.")
""",
        figure=True,
    ),
    md(
        "**Q5. Where is each kind of uncertainty high on the spirals, and which one flags inputs unlike the training data?**"
    ),
    code("""
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
"""),
    md("**Q6. Is the ensemble better calibrated than one network?**"),
    code("""
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
"""),
    md("""
**Q7. Laplace or Gaussian?** The noise in this toy problem is Gaussian, so the Gaussian head is the right
family; the Laplace head pays for its heavier tails and sharper peak (compare the rows of the table in
section 3):
"""),
    code("""
g, l = regression_table.loc["ensemble of 6", "test NLL"], regression_table.loc["laplace, ensemble of 6", "test NLL"]
print(f"ensemble of 6: Gaussian test NLL {g:.3f}, Laplace {l:.3f}: the {'Gaussian' if g < l else 'Laplace'} head scores better here.")
"""),
    md("""
Next: `practical_part2.ipynb` puts several members inside one network (MIMO and BatchEnsemble) and weighs
what they cost against the deep ensemble.
"""),
]
