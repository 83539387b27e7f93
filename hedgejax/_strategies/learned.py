"""Trainable no-trade bands: a constant asymmetric band and a band whose half-width is a small
neural network of the state (time to maturity, moneyness, gamma).

Both trade, like `BandHedge`, only when the position leaves the band around delta-neutral
(-delta, shares) and then only to the nearest edge. Every width is positive by construction
(a softplus of an unconstrained parameter), so `fit()` can train the raw parameters with any
optax optimiser, and every gradient stays finite, also where gamma -> 0 (deep in or out of
the money) and at expiry.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._validate import check_int, check_positive, real_scalar
from .bands import _safe_cbrt, raw_softplus, trade_to_band
from .base import AbstractStrategy, Observation, as_key, check_network_size

_LOG2 = math.log(2.0)


def safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt(max(x, 0)) with a finite gradient at 0 (the "double where" trick)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def zero_last_layer(mlp: eqx.nn.MLP) -> eqx.nn.MLP:
    """`mlp` with the weights and bias of its output layer set to zero: it outputs exactly 0
    everywhere, while the gradient with respect to the output layer is not zero."""
    last = mlp.layers[-1]
    return eqx.tree_at(lambda m: (m.layers[-1].weight, m.layers[-1].bias), mlp,
                       (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))


def apply_per_path(mlp: eqx.nn.MLP, features: jax.Array) -> jax.Array:
    """Evaluate `mlp` on every path of `features` (..., n_features): (..., out). The path
    axes may be several (`hedge()` lays paths out as rows of 64 lanes)."""
    flat = features.reshape(-1, features.shape[-1])
    return jax.vmap(mlp)(flat).reshape(features.shape[:-1] + (-1,))


def state_features(obs: Observation, reference: float, book_scale: float) -> list[jax.Array]:
    """The three state features, each O(1) and smooth, shape (n_paths,) each:

    - log-moneyness log(S / reference);
    - sqrt(time to maturity in years): the diffusion time scale (vol x sqrt(tau) is the
      typical log-move to expiry), 0 at expiry with a finite gradient there;
    - asinh(Gamma x S / book_scale): gamma in shares per unit log-move of the spot, signed
      and compressed: ~Gamma S for small values (0 where gamma -> 0, smooth through 0 for
      short-gamma books) and ~log for the large gamma of an at-the-money book near expiry.
    """
    spot = obs.spot
    dtype = spot.dtype
    log_moneyness = jnp.log(spot / jnp.asarray(reference, dtype))
    root_tau = jnp.broadcast_to(safe_sqrt(jnp.asarray(obs.time_to_maturity, dtype)),
                                spot.shape)
    gamma = jnp.arcsinh(obs.gamma * spot / jnp.asarray(book_scale, dtype))
    return [log_moneyness, root_tau, gamma]


def whalley_wilmott_unit_width(obs: Observation) -> jax.Array:
    """The Whalley-Wilmott half-width at risk aversion 1 (per unit currency), in shares:
    (3/2 exp(-r tau) c S Gamma^2)^(1/3); the band at risk aversion gamma is this times
    gamma^(-1/3). Finite gradient where Gamma -> 0 or c = 0."""
    x = (1.5 * jnp.exp(-obs.rate * obs.time_to_maturity) * obs.cost_rate * obs.spot
         * obs.gamma**2)
    return _safe_cbrt(x)


class AsymmetricBand(AbstractStrategy):
    """Constant asymmetric no-trade band: the position is kept in

        [-delta - lower_width, -delta + upper_width]   (shares),

    trading to the nearest edge when it leaves. The widths are stored as unconstrained raw
    parameters (width = softplus(raw)), so they stay >= 0 under training.

    `AsymmetricBand(0, 0)` is delta hedging every step (softplus(-inf) = 0 exactly) and
    `AsymmetricBand(w, w)` is `BandHedge(w)`.

    Example:
        >>> import hedgejax as hj
        >>> band = hj.AsymmetricBand(lower=0.05, upper=0.1)
        >>> round(float(band.lower_width), 6), round(float(band.upper_width), 6)
        (0.05, 0.1)
    """

    raw_lower: jax.Array
    raw_upper: jax.Array
    _repr_public = {"raw_lower": ("lower", "lower_width"),
                    "raw_upper": ("upper", "upper_width")}

    def __init__(self, lower: float | jax.Array, upper: float | jax.Array):
        """Args: lower, upper: the half-widths below and above -delta, in shares (>= 0)."""
        self.raw_lower = raw_softplus("lower", lower, owner="AsymmetricBand")
        self.raw_upper = raw_softplus("upper", upper, owner="AsymmetricBand")

    @property
    def lower_width(self) -> jax.Array:
        """How far below -delta the position may fall before trading (shares, >= 0)."""
        return jax.nn.softplus(self.raw_lower)

    @property
    def upper_width(self) -> jax.Array:
        """How far above -delta the position may rise before trading (shares, >= 0)."""
        return jax.nn.softplus(self.raw_upper)

    def __call__(self, obs: Observation, position: jax.Array) -> jax.Array:
        neutral = -obs.delta
        return jnp.clip(position, neutral - self.lower_width, neutral + self.upper_width)


class LearnedBand(AbstractStrategy):
    """A no-trade band around -delta whose half-width (shares) is learned from the state:

        width = softplus(a) x WW(obs)  +  init_width x softplus(mlp(features)) / log 2,

    - WW(obs) = (3/2 exp(-r tau) c S Gamma^2)^(1/3) is the Whalley-Wilmott band shape at unit
      risk aversion (`whalley_wilmott=True`; c the costs' proportional rate), so softplus(a)
      plays the role of risk_aversion^(-1/3). It starts at `init_ww` (> 0: a coefficient
      of exactly 0 would have zero gradient and never move; use `whalley_wilmott=False`
      to drop the term).
    - `mlp` is a small `eqx.nn.MLP` (tanh) of three features (see `state_features`):
      log(S / reference), sqrt(time to maturity in years), asinh(Gamma S / book_scale).
      Its output layer starts at zero, so the untrained band is WW x init_ww plus a constant
      `init_width` shares. With `asymmetric=True` it has two outputs, the widths below and
      above -delta (each with its own WW term coefficient).

    The family contains the constant band (mlp constant) and the Whalley-Wilmott band
    (mlp -> -inf), so a fit can only improve on the best of both, up to Monte Carlo noise and
    optimisation. Widths are positive by construction and the gradient with respect to every
    parameter is finite everywhere (gamma -> 0, tau = 0, zero costs).

    Measured (tests/test_learned_strategies.py): ATM call, T = 0.25, 20 steps, 1%
    proportional costs, objective mean_cost_variance(lam=0.1); after 150 adam steps (3e-2)
    at 2^12 paths, on 2^15 fresh paths: 0.987, against 1.052 for the best constant band
    (width 0.2) and 1.084 for the best Whalley-Wilmott band (risk aversion 0.3).

    Trained by `fit()` (all inexact-array leaves: the MLP's weights and `raw_ww`);
    `reference`, `init_width` and `book_scale` are static configuration.

    Example:
        >>> import jax, hedgejax as hj
        >>> band = hj.LearnedBand(jax.random.key(0), init_width=0.05)
        >>> res = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25), band,
        ...                hj.Proportional(0.002), hj.TimeGrid(0.25, 20), 256,
        ...                jax.random.key(1))
        >>> res.pnl.shape
        (256,)
    """

    mlp: eqx.nn.MLP
    raw_ww: jax.Array | None
    reference: float = eqx.field(static=True)
    init_width: float = eqx.field(static=True)
    book_scale: float = eqx.field(static=True)
    asymmetric: bool = eqx.field(static=True)

    def __init__(
        self,
        key: jax.Array,
        hidden: int = 16,
        depth: int = 1,
        *,
        reference: float = 100.0,
        init_width: float = 0.05,
        whalley_wilmott: bool = True,
        init_ww: float = 1.0,
        asymmetric: bool = False,
        book_scale: float = 1.0,
    ):
        """Args:
            key: `jax.random` key for the MLP's initial weights.
            hidden: units per hidden layer.
            depth: number of hidden layers (0: the width is a softplus of an affine map).
            reference: reference strike K for the log-moneyness feature (currency).
            init_width: the constant part of the half-width at initialisation (shares, > 0).
            whalley_wilmott: include the Whalley-Wilmott-shaped term.
            init_ww: its initial coefficient softplus(a) (> 0; risk_aversion^(-1/3)).
            asymmetric: separate widths below and above -delta.
            book_scale: typical size of the book's delta (shares; 1 for one option), used to
                normalise the gamma feature.
        """
        check_positive("reference", reference)
        check_positive("init_width", init_width)
        check_positive("init_ww", init_ww)
        check_positive("book_scale", book_scale)
        hidden = check_int("hidden", hidden, 1)
        depth = check_int("depth", depth, 0)
        check_network_size(hidden, depth)
        n_out = 2 if asymmetric else 1
        key = as_key(key)
        mlp = eqx.nn.MLP(3, n_out, hidden, depth, activation=jnp.tanh, key=key)
        self.mlp = zero_last_layer(mlp)
        raw_ww = raw_softplus("init_ww", init_ww, positive=True, owner="LearnedBand")
        self.raw_ww = jnp.broadcast_to(raw_ww, (n_out,)) if whalley_wilmott else None
        self.reference = real_scalar("reference", reference)
        self.init_width = real_scalar("init_width", init_width)
        self.book_scale = real_scalar("book_scale", book_scale)
        self.asymmetric = bool(asymmetric)

    def half_widths(self, obs: Observation) -> tuple[jax.Array, jax.Array]:
        """The band's (lower, upper) half-widths in shares, each (n_paths,) and > 0."""
        features = jnp.stack(state_features(obs, self.reference, self.book_scale), axis=-1)
        raw = apply_per_path(self.mlp, features)
        widths = self.init_width / _LOG2 * jax.nn.softplus(raw)  # (n_paths, n_out)
        if self.raw_ww is not None:
            ww = whalley_wilmott_unit_width(obs)
            widths = widths + jax.nn.softplus(self.raw_ww) * ww[..., None]
        widths = widths.astype(obs.spot.dtype)
        return widths[..., 0], widths[..., -1]

    def __call__(self, obs: Observation, position: jax.Array) -> jax.Array:
        lower, upper = self.half_widths(obs)
        neutral = -obs.delta
        if not self.asymmetric:
            return trade_to_band(position, neutral, lower)
        return jnp.clip(position, neutral - lower, neutral + upper)

