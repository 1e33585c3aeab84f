"""A practitioner's walk-through on a CSV: estimators, intervals, calibration, saving, the CLI."""

from notebook_sources.cells import SETUP, code, md

CELLS = [
    md(r"""
# Deep ensembles on your own data

A practitioner's walk-through: a table of numbers in a CSV file, a column to predict, and the questions that
follow a prediction. *How sure is it? Do its 90% intervals hold 90% of new values? Which rows look unlike
anything it was trained on?* We use scikit-learn's bundled diabetes data (442 patients, 10 measurements, a
disease-progression score one year later; nothing is downloaded) and write it to a CSV first, so every step
below is what you would run on your own file: replace the cell marked **your data**.

Covered: the scikit-learn estimators `DeepEnsembleRegressor` and `DeepEnsembleClassifier`, calibrated
intervals and their coverage, calibration plots, the split of the uncertainty, saving and loading, and the
`deepens` command line on the same CSV files.
"""),
    code(SETUP),
    code("""
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

# 40 passes over the data (the estimators' default): on a few hundred rows more epochs overfit (300 raised the
# test NLL from about 5.7 to 6.5 here). Quick mode trains fewer members instead.
EPOCHS, MEMBERS = 40, (3 if QUICK else 5)
WORK = Path(tempfile.mkdtemp(prefix="deepens-your-data-"))   # every file this notebook writes goes here
print("writing to", WORK)
"""),
    md(r"""
## 1. Your data

**Your data:** replace the first line by `frame = pd.read_csv("your_file.csv")` and `TARGET` by the column
to predict. The split keeps a quarter of the rows aside as a test set that no fit below ever sees; we save
both parts as CSV files for the command line in section 6.
"""),
    code("""
frame = load_diabetes(as_frame=True).frame          # your data: frame = pd.read_csv("your_file.csv")
TARGET = "target"                                    # your data: the column to predict

train, test = train_test_split(frame, test_size=0.25, random_state=0)
train.to_csv(WORK / "train.csv", index=False)
test.to_csv(WORK / "test.csv", index=False)
X_train, y_train = train.drop(columns=TARGET), train[TARGET]
X_test, y_test = test.drop(columns=TARGET), test[TARGET]
print(f"{len(train)} training rows, {len(test)} test rows, {X_train.shape[1]} features")
frame.describe().T.round(3)
"""),
    md(r"""
## 2. The estimator

`DeepEnsembleRegressor` standardises inputs and targets with the training statistics, trains $M = 5$ networks (3 in quick mode)
on the Gaussian NLL, and answers in the target's own units. By default (`calibration="auto"`) it holds out
20% of the training rows and fits *split-conformal* intervals on them: the score of a held-out row is
$|y - \mu| / \sigma$, and the interval at level $\alpha$ is $\mu \pm q\,\sigma$ with $q$ the
$\lceil (n + 1)\alpha \rceil$-th smallest score, which covers at least $\alpha$ of new rows drawn like the
training rows. `calibration=None` trains on every row and gives the raw mixture's intervals. We fit both.
"""),
    code("""
settings = dict(members=MEMBERS, hidden_layer_sizes=(50,), epochs=EPOCHS, learning_rate=0.01, random_state=0)
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
"""),
    md(r"""
## 3. Do the intervals cover what they claim?

For every level from 5% to 95%, the fraction of test values inside the central interval. A calibrated model
lies on the diagonal; below it, intervals are too narrow. Then the intervals themselves, test rows sorted by
their prediction.
"""),
    code(
        """
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
""",
        figure=True,
    ),
    md(r"""
The probability integral transform of the ensemble's whole predictive distribution (the mixture's CDF at
each observed value; uniform when the distribution is right), from `predict_cdf`:
"""),
    code(
        """
display(plots.regression_calibration_figure(model.predict_cdf(X_test, y_test), title="diabetes: the mixture's calibration on the test rows"))
""",
        figure=True,
    ),
    md(r"""
## 4. Which rows is it unsure about, and why?

`predict_uncertainty` splits each row's predictive variance into the *aleatoric* part (the noise the members
expect) and the *epistemic* part (their disagreement). Rows unlike the training data raise the second: we make
some by moving test rows far outside the range of the training features (every feature times 4).
"""),
    code(
        """
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
""",
        figure=True,
    ),
    md(r"""
## 5. A classifier, the same way

`DeepEnsembleClassifier` takes any labels; by default it fits a temperature on held-out rows. On the bundled
breast-cancer data (569 tumours, 30 features, benign or malignant):
"""),
    code(
        """
Xc, yc = load_breast_cancer(return_X_y=True, as_frame=True)
Xc_train, Xc_test, yc_train, yc_test = train_test_split(Xc, yc, test_size=0.25, random_state=0, stratify=yc)
classifier = DeepEnsembleClassifier(members=MEMBERS, epochs=EPOCHS, random_state=0).fit(Xc_train, yc_train)
proba = classifier.predict_proba(Xc_test)
print("classes:", classifier.classes_, "| calibration:", classifier.calibration_)
display(pd.Series(classifier.evaluate(Xc_test, yc_test)).round(4).to_frame("test"))
reliability = metrics.reliability_diagram(classifier.encode_labels(yc_test), proba, bins=10)
display(plots.reliability_figure(reliability, title="breast cancer, test rows"))
u = classifier.predict_uncertainty(Xc_test)
print(f"most uncertain test row: total {float(np.max(u.total)):.3f} nats, of which knowledge {float(u.knowledge[np.argmax(u.total)]):.3f}")
""",
        figure=True,
    ),
    md(r"""
## 6. Saving, loading, and the command line

`model.save(folder)` writes JSON and safetensors files (no pickle: loading a model runs no code), and
`deepens.load(folder)` gives back an estimator that predicts exactly the same numbers.
"""),
    code("""
folder = model.save(WORK / "diabetes_model")
loaded = deepens.load(folder)
print(sorted(p.name for p in folder.iterdir()))
print("same predictions after loading:", np.array_equal(loaded.predict(X_test), model.predict(X_test)))
print("same intervals after loading:  ", all(np.array_equal(a, b) for a, b in zip(loaded.predict_interval(X_test), model.predict_interval(X_test))))
"""),
    md(r"""
The same steps from a shell, on the CSV files written in section 1 (in a terminal:
`deepens train train.csv --target target -o model`, and so on):
"""),
    code("""
found = shutil.which("deepens", path=str(Path(sys.executable).parent)) or shutil.which("deepens")
DEEPENS = [found] if found else [sys.executable, "-m", "deepens.cli"]

def deepens_cli(*args):
    result = subprocess.run([*DEEPENS, *map(str, args)], capture_output=True, text=True,
                            env={**os.environ, "NO_COLOR": "1"})  # plain text tables in the notebook
    print(f"$ deepens {' '.join(map(str, args))}")
    print((result.stdout + result.stderr).strip()[-1500:])
    result.check_returncode()

deepens_cli("train", WORK / "train.csv", "--target", TARGET, "--members", MEMBERS, "--epochs", EPOCHS, "--quiet", "-o", WORK / "cli_model")
deepens_cli("predict", WORK / "cli_model", WORK / "test.csv", "--level", 0.9, "-o", WORK / "predictions.csv")
pd.read_csv(WORK / "predictions.csv").head().round(2)
"""),
    code(
        """
deepens_cli("evaluate", WORK / "cli_model", WORK / "test.csv", "--out", WORK / "report")
print(sorted(p.name for p in (WORK / "report").iterdir()))
display(Image(filename=str(WORK / "report" / "calibration.png"), width=800))
""",
        figure=True,
    ),
    code("""
shutil.rmtree(WORK)   # keep the files instead by deleting this line
"""),
]
