"""P&L explain: the per-path split of a hedge's P&L into the desk's standard terms
(`hedge(..., attribution=True)`).

Over each step [t_i, t_{i+1}] of length dt the holder owns the book (hedge-model value V),
h_i shares and u_i units of listed options. With the hedge model's Greeks of the whole
position observed at t_i (book plus options; the shares add h_i to the delta), dS = S_{i+1} -
S_i and d sigma the change of the hedge model's volatility state (`model.vega_field` after
`model.conditioned(world state)`: v0 for Heston, constant 0 for Black-Scholes and Merton):

    delta     = Delta_net dS                  (Delta_net = book delta + h_i + u_i option delta)
    gamma     = 1/2 Gamma dS^2
    theta     = Theta dt                      (Theta = dV/dt at fixed spot and vol state)
    vega      = Vega d sigma
    vanna     = Vanna dS d sigma
    volga     = 1/2 Volga d sigma^2
    carry     = -(V + u_i P + h_i S_i) (e^{r dt} - 1)   financing of the whole position
    dividends = h_i S_{i+1} (e^{q dt} - 1)
    commission, spread, impact, slippage: minus the transaction costs of each kind
    residual  = pnl - (all of the above)

each accrued to T (times e^{r (T - t_{i+1})}; costs e^{r (T - t_i)}) and summed over the
steps: the terms sum to `HedgeResult.pnl` by construction (to rounding). This is the Taylor
expansion of the position's value in spot, time and the vol state, as a desk's risk-based
P&L explain (Taleb, "Dynamic Hedging", 1997, ch. 8; Bergomi, "Stochastic Volatility
Modeling", 2016, sec. 1.1 for the gamma/theta split of a delta-hedged option).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ._repr import module_repr

# Order of the terms: market terms, financing, costs, then what is left.
TERMS = ("delta", "gamma", "theta", "vega", "vanna", "volga", "carry", "dividends",
         "commission", "spread", "impact", "slippage", "residual")


class Attribution(eqx.Module):
    """Per-path P&L explain of a `hedge()` run (`hedge(..., attribution=True)`): every
    attribute is an array of shape (n_paths,) in time-T currency, > 0 a gain to the holder of
    the book, and the terms sum to `HedgeResult.pnl` (module docstring for the definitions).

    Attributes:
        delta: net delta x spot move (what the hedge failed to offset).
        gamma: 1/2 Gamma dS^2 of the book and listed options.
        theta: Theta dt (dV/dt at fixed spot, per year, times dt).
        vega: Vega x the change of the hedge model's vol state (0 when it is constant).
        vanna: Vanna x dS x the change of the vol state.
        volga: 1/2 Volga x the change of the vol state squared.
        carry: financing of the book, the listed options and the shares at `rate`.
        dividends: dividends earned on the shares held (at `div`).
        commission: minus proportional and fixed fees (`Proportional`, `Fixed`,
            `SmoothFixed`), <= 0.
        spread: minus half-spread costs (`Spread`), <= 0.
        impact: minus market-impact costs (`Impact`), <= 0.
        slippage: minus random slippage (`RandomSlippage`).
        residual: the P&L minus every term above: higher-order and discretisation effects,
            and the hedge model's mispricing of the world.
    """

    __repr__ = module_repr

    delta: jax.Array
    gamma: jax.Array
    theta: jax.Array
    vega: jax.Array
    vanna: jax.Array
    volga: jax.Array
    carry: jax.Array
    dividends: jax.Array
    commission: jax.Array
    spread: jax.Array
    impact: jax.Array
    slippage: jax.Array
    residual: jax.Array

    def terms(self) -> dict[str, jax.Array]:
        """The terms in the order of `TERMS`: name -> array (n_paths,)."""
        return {name: getattr(self, name) for name in TERMS}

    def total(self) -> jax.Array:
        """The sum of all terms, in the order of `TERMS` (equals the P&L to rounding)."""
        out = self.delta
        for name in TERMS[1:]:
            out = out + getattr(self, name)
        return out


# The explain's zero-initialised running sums: every term but the residual.
ACCUMULATED = TERMS[:-1]


def cost_kind(cost) -> str:
    """The explain term a cost model's charges go to: `Spread` -> spread, `Impact` -> impact,
    `RandomSlippage` -> slippage, everything else (`Proportional`, `Fixed`, `SmoothFixed`,
    user-defined costs) -> commission."""
    from ._costs import Impact, RandomSlippage, Spread

    if isinstance(cost, Spread):
        return "spread"
    if isinstance(cost, Impact):
        return "impact"
    if isinstance(cost, RandomSlippage):
        return "slippage"
    return "commission"


def cost_parts(cost, trade, price, noise) -> dict[str, jax.Array]:
    """The charge of `cost` for `trade` at `price` split by `cost_kind`, term by term of a
    `CostSum` (every random term receives the same `noise`, as `CostSum.charge` gives it)."""
    from ._costs import CostSum

    parts: dict[str, jax.Array] = {}
    for term in (cost.terms if isinstance(cost, CostSum) else (cost,)):
        kind = cost_kind(term)
        amount = term.charge(trade, price, noise if term.is_random else None)
        parts[kind] = amount if kind not in parts else parts[kind] + amount
    return parts


class Sensitivities(NamedTuple):
    """A position's value and its Taylor coefficients at one step, per path (currency;
    derivatives w.r.t. spot, time in years and the hedge model's vol state)."""

    value: jax.Array
    delta: jax.Array
    gamma: jax.Array
    theta: jax.Array
    vega: jax.Array
    vanna: jax.Array
    volga: jax.Array


def sensitivities(model, book, log_spot, spot, t, alive=None, path=None) -> Sensitivities:
    """Value, delta, gamma, theta, vega, vanna and volga of `book` per path under `model` (the
    hedge model conditioned on the world's state), by forward-mode autodiff of the pricer in
    log-spot, time and `model.vega_field` (as `hedge()`'s Greeks; `_greeks_log`), then the
    chain rule to spot: V_S = V_x / S, V_SS = (V_xx - V_x) / S^2, V_S,sigma = V_x,sigma / S.
    Models without a vol state (`vega_field` empty) have zero vega, vanna and volga."""
    from ._pricing.registry import book_value_log

    name = model.vega_field
    p0 = getattr(model, name) if name else jnp.zeros((), log_spot.dtype)

    def value(x, tt, p):
        m = eqx.tree_at(lambda m: getattr(m, name), model, p) if name else model
        return book_value_log(m, book, x, tt, alive, path)

    ones_x = jnp.ones_like(log_spot)
    ones_p = jnp.ones_like(p0)
    t = jnp.asarray(t, log_spot.dtype)

    def d_x(x, p):
        return jax.jvp(lambda y: value(y, t, p), (x,), (ones_x,))

    def d_p(x, p):
        return jax.jvp(lambda q: value(x, t, q), (p,), (ones_p,))

    (v, v_x), (_, v_xx) = jax.jvp(lambda x: d_x(x, p0), (log_spot,), (ones_x,))
    _, v_t = jax.jvp(lambda tt: value(log_spot, tt, p0), (t,), (jnp.ones_like(t),))
    if name:
        _, v_xp = jax.jvp(lambda p: d_x(log_spot, p)[1], (p0,), (ones_p,))
        (_, v_p), (_, v_pp) = jax.jvp(lambda p: d_p(log_spot, p), (p0,), (ones_p,))
    else:
        v_xp = v_p = v_pp = jnp.zeros_like(v)
    shape = jnp.shape(log_spot)
    return Sensitivities(*(jnp.broadcast_to(a, shape) for a in (
        v, v_x / spot, (v_xx - v_x) / (spot * spot), v_t, v_p, v_xp / spot, v_pp)))


def vol_state(model, shape) -> jax.Array:
    """The hedge model's vol state (`vega_field`) per path, zeros without one."""
    name = model.vega_field
    if not name:
        return jnp.zeros(shape)
    return jnp.broadcast_to(getattr(model, name), shape)
