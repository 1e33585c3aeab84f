"""What an ensemble predicts for a batch of inputs: the members' outputs and the mixture they make.

Both classes hold the raw member outputs ``(M, N, O)`` and derive everything else on first use.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from deepens import distributions, mixture, validation
from deepens.distributions import Distribution
from deepens.heads import Categorical, Head
from deepens.uncertainty import (
    CategoricalUncertainty,
    VarianceUncertainty,
    categorical_uncertainty,
    entropy,
    variance_uncertainty,
)


@functools.partial(jax.jit, static_argnames=("level",))
def _interval(distribution: mixture.UniformMixture, level: float) -> tuple[Array, Array]:
    return distribution.interval(level)


@dataclasses.dataclass(frozen=True)
class RegressionPrediction:
    """Regression ensemble prediction. ``N`` examples, ``T`` targets; when the ensemble was trained on a
    1-D target every per-target array drops its last axis (``(N,)`` instead of ``(N, 1)``).

    Attributes:
      head: the members' regression head.
      member_outputs: ``(M, N, O)`` raw outputs.
      squeeze: drop the target axis of length 1.
    """

    head: Head
    member_outputs: Array | np.ndarray  # JAX from an ensemble, or NumPy (saved outputs)
    squeeze: bool = False

    def _targets(self, y: Array) -> Array:
        """``y`` in the prediction's per-target shape ``(N[, T])``, checked against it (for a squeezed
        prediction ``(N, 1)`` is accepted too)."""
        y = jnp.asarray(y, self.member_outputs.dtype)
        expected = self.member_means.shape[1:]
        if self.squeeze and y.shape == expected + (1,):
            y = y[..., 0]
        if y.shape != expected:
            shown = expected + ((1,) if self.squeeze else ())
            raise ValueError(f"y has shape {y.shape} but the prediction is for targets of shape {shown}")
        return y

    @property
    def members(self) -> int:
        return self.member_outputs.shape[0]

    @functools.cached_property
    def member_distribution(self) -> Distribution:
        """The members' distributions, parameters ``(M, N[, T])``: split and softplus happen here, once."""
        members = self.head.distribution(jnp.asarray(self.member_outputs))  # the heads convert NumPy anyway
        return jax.tree_util.tree_map(lambda a: a[..., 0], members) if self.squeeze else members

    @functools.cached_property
    def distribution(self) -> mixture.UniformMixture:
        """The ensemble's predictive distribution: the uniform mixture of the members, ``(N[, T])``."""
        return mixture.UniformMixture(self.member_distribution)

    @functools.cached_property
    def member_means(self) -> Array:
        """``(M, N[, T])``."""
        return self.member_distribution.mean

    @functools.cached_property
    def member_variances(self) -> Array:
        """``(M, N[, T])``; zero for a point head."""
        return self.member_distribution.variance

    @functools.cached_property
    def uncertainty(self) -> VarianceUncertainty:
        """Total, aleatoric (mean of member variances) and epistemic (variance of member means)."""
        return variance_uncertainty(self.member_means, self.member_variances)

    @property
    def mean(self) -> Array:
        """Mixture mean ``(N[, T])``."""
        return self.distribution.mean

    @property
    def variance(self) -> Array:
        """Moment-matched mixture variance ``(N[, T])``."""
        return self.distribution.variance

    @property
    def std(self) -> Array:
        return jnp.sqrt(self.variance)

    def log_prob(self, y: Array, *, joint: bool = True) -> Array:
        """Exact log-density of the mixture at ``y``.

        Args:
          y: ``(N[, T])`` targets.
          joint: ``True`` (default): the density of the whole target vector under the ensemble,
            ``log mean_m prod_t p_m(y_t)``, ``(N,)`` (each member is a product over targets; what TFP's
            ``MixtureSameFamily`` of ``Independent`` gives). ``False``: each target's marginal mixture,
            ``log mean_m p_m(y_t)``, ``(N[, T])``, the quantity :func:`deepens.metrics.mixture_nll` and
            :func:`deepens.metrics.evaluate` (``nll_mixture``) score. The two agree for one target.
        """
        y = self._targets(y)
        return self.distribution.log_prob(y, joint=joint and not self.squeeze)

    def nll(self, y: Array, *, joint: bool = True) -> Array:
        """Negative log-likelihood under the exact mixture: ``-log_prob(y, joint=joint)``; ``(N,)`` when
        ``joint`` (summed over targets inside each member), ``(N[, T])`` per-target marginals otherwise."""
        return -self.log_prob(y, joint=joint)

    def gaussian_nll(self, y: Array) -> Array:
        """Per-example NLL of the moment-matched Gaussian (the paper's evaluation), summed over targets,
        ``(N,)``; :func:`deepens.metrics.evaluate`'s ``nll`` is its mean over examples *and* targets."""
        per_target = -distributions.Normal(self.mean, self.std).log_prob(self._targets(y))
        return per_target if self.squeeze else jnp.sum(per_target, axis=-1)

    def cdf(self, y: Array) -> Array:
        """Mixture CDF at ``y``, ``(N[, T])`` (probability integral transform values)."""
        return self.distribution.cdf(self._targets(y))

    def interval(self, level: float = 0.95) -> tuple[Array, Array]:
        """Central interval holding probability ``level`` under the mixture: ``(lower, upper)``."""
        return _interval(self.distribution, validation.level(level, name="interval level"))


@dataclasses.dataclass(frozen=True)
class ClassificationPrediction:
    """Classification ensemble prediction over ``K`` classes.

    Attributes:
      member_outputs: ``(M, N, K)`` logits.
    """

    member_outputs: Array | np.ndarray  # JAX from an ensemble, or NumPy (saved outputs)
    head: Head = Categorical()

    @property
    def members(self) -> int:
        return self.member_outputs.shape[0]

    @functools.cached_property
    def member_distribution(self) -> Distribution:
        """The members' categorical distributions, logits ``(M, N, K)``."""
        return self.head.distribution(jnp.asarray(self.member_outputs))  # the heads convert NumPy anyway

    @functools.cached_property
    def distribution(self) -> mixture.UniformMixture:
        """The ensemble's predictive distribution: the uniform mixture of the members."""
        return mixture.UniformMixture(self.member_distribution)

    @functools.cached_property
    def member_probs(self) -> Array:
        """``(M, N, K)``."""
        members = self.member_distribution
        assert isinstance(members, distributions.Categorical)  # a classification head's members
        return members.probs

    @functools.cached_property
    def probs(self) -> Array:
        """The ensemble's class probabilities, the average of the members', ``(N, K)``."""
        return mixture.mixture_probs(self.member_probs)

    @property
    def label(self) -> Array:
        """Most probable class ``(N,)``."""
        return jnp.argmax(self.probs, axis=-1)

    @property
    def confidence(self) -> Array:
        """Probability of the most probable class ``(N,)``."""
        return jnp.max(self.probs, axis=-1)

    @property
    def entropy(self) -> Array:
        """Predictive entropy in nats ``(N,)`` (the total uncertainty)."""
        return entropy(self.probs)

    @functools.cached_property
    def uncertainty(self) -> CategoricalUncertainty:
        """Total, data and knowledge uncertainty in nats, each ``(N,)``."""
        return categorical_uncertainty(self.member_probs)

    def _labels(self, y: Array) -> Array:
        """``y`` as ``(N,)`` integer class indices in ``[0, K)``; a ValueError otherwise (a label of -1
        would index the last class, one of ``K`` or more give NaN, 0.7 would be read as class 0)."""
        n, k = self.member_outputs.shape[1:]
        if isinstance(y, jax.core.Tracer):  # pyright: ignore[reportAttributeAccessIssue]  # jax.core is imported by jax at run time  # inside a transformation only the shape can be checked
            if y.shape != (n,):
                raise ValueError(f"y has shape {y.shape} but the prediction is for {n} labels")
            return y
        labels = np.asarray(y)
        if labels.shape != (n,):
            raise ValueError(f"y has shape {labels.shape} but the prediction is for {n} labels")
        if labels.dtype == bool or not np.issubdtype(labels.dtype, np.number):
            raise ValueError(f"y must hold integer class labels, got dtype {labels.dtype}")
        if not np.issubdtype(labels.dtype, np.integer) and (
            not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))
        ):
            raise ValueError("y must hold integer class labels, got non-integer values")
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"y must hold class labels in [0, {k}), got values in [{labels.min()}, {labels.max()}]")
        return jnp.asarray(labels.astype(np.int32))

    def log_prob(self, y: Array) -> Array:
        """``log mean_m p_m(y)`` per example, from log-softmax for accuracy, ``(N,)``."""
        return self.distribution.log_prob(self._labels(y))

    def nll(self, y: Array) -> Array:
        return -self.log_prob(y)
