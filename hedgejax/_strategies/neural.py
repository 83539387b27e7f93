"""Deep hedging (Buehler, Gonon, Teichmann & Wood, 2019): a neural network maps the hedger's
state to the hedge position, trained end to end through `hedge()` on a risk measure of the
P&L (`fit()`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._validate import check_int, check_positive, real_scalar
from .base import AbstractStrategy, Observation, as_key, check_network_size
from .learned import apply_per_path, safe_sqrt, zero_last_layer


class NeuralHedge(AbstractStrategy):
    """A deep-hedging policy, residual around delta hedging:

        target = -delta + book_scale x mlp(features)   (shares),

    with `mlp` an `eqx.nn.MLP` (tanh) evaluated on every path (vmapped over the path axis)
    and the features, each O(1) for a book of size ~`book_scale` shares of delta:

    - log(S / reference), the log-moneyness;
    - sqrt(time to maturity in years);
    - position / book_scale, the position held before this decision (0 at t0);
    - delta / book_scale, the book's delta under the hedge model (autodiff);
    - with `variance_feature=True`, sqrt(variance): the world's instantaneous volatility
      (per sqrt(year)) in stochastic volatility worlds such as Heston.

    The output layer starts at exact zeros, so the untrained network outputs exactly 0 and
    the untrained policy's target is -delta bit for bit (x + 0 = x in floating point): the
    decision of `DeltaHedge(every=1)`. Training learns the correction that costs, discrete
    rebalancing or a misspecified hedge model call for. Feeding the previous position lets
    the policy learn no-trade behaviour under transaction costs.

    Inside `hedge()` the untrained policy's P&L equals `DeltaHedge`'s to rounding, not bit
    for bit: the network changes the compiled step, and XLA may then evaluate the book's
    delta (the `obs.delta` both policies read) with last-bit differences (seen on CPU with
    jax 0.12: 7e-15 on P&Ls of order 1 in float64).

    Example:
        >>> import jax, hedgejax as hj
        >>> policy = hj.NeuralHedge(jax.random.key(0))
        >>> res = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25), policy,
        ...                None, hj.TimeGrid(0.25, 20), 256, jax.random.key(1))
        >>> res.pnl.shape
        (256,)
    """

    mlp: eqx.nn.MLP
    reference: float = eqx.field(static=True)
    book_scale: float = eqx.field(static=True)
    variance_feature: bool = eqx.field(static=True)

    def __init__(
        self,
        key: jax.Array,
        hidden: int = 32,
        depth: int = 2,
        *,
        reference: float = 100.0,
        book_scale: float = 1.0,
        variance_feature: bool = False,
    ):
        """Args:
            key: `jax.random` key for the MLP's initial weights.
            hidden: units per hidden layer.
            depth: number of hidden layers.
            reference: reference strike K for the log-moneyness feature (currency).
            book_scale: typical size of the book's delta (shares; 1 for one option): the
                position and delta features are divided by it and the output multiplied.
            variance_feature: also feed sqrt(obs.variance) (the world must provide it).
        """
        check_positive("reference", reference)
        check_positive("book_scale", book_scale)
        hidden = check_int("hidden", hidden, 1)
        depth = check_int("depth", depth, 0)
        check_network_size(hidden, depth)
        n_features = 5 if variance_feature else 4
        key = as_key(key)
        mlp = eqx.nn.MLP(n_features, 1, hidden, depth, activation=jnp.tanh, key=key)
        self.mlp = zero_last_layer(mlp)
        self.reference = real_scalar("reference", reference)
        self.book_scale = real_scalar("book_scale", book_scale)
        self.variance_feature = bool(variance_feature)

    def features(self, obs: Observation, position: jax.Array) -> jax.Array:
        """The policy's inputs, shape (n_paths, n_features)."""
        spot = obs.spot
        dtype = spot.dtype
        scale = jnp.asarray(self.book_scale, dtype)
        columns = [
            jnp.log(spot / jnp.asarray(self.reference, dtype)),
            jnp.broadcast_to(safe_sqrt(jnp.asarray(obs.time_to_maturity, dtype)), spot.shape),
            position.astype(dtype) / scale,
            obs.delta / scale,
        ]
        if self.variance_feature:
            if obs.variance is None:
                raise ValueError(
                    "NeuralHedge(variance_feature=True) needs a world that reports its "
                    "variance (e.g. Heston); this one reports variance=None")
            columns.append(safe_sqrt(obs.variance.astype(dtype)))
        return jnp.stack(columns, axis=-1)

    def __call__(self, obs: Observation, position: jax.Array) -> jax.Array:
        correction = apply_per_path(self.mlp, self.features(obs, position))[..., 0]
        return (-obs.delta + self.book_scale * correction).astype(obs.spot.dtype)
