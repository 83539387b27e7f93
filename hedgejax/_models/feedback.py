"""Feedback world: a population of delta hedgers whose trades move the price they hedge.

The fundamental value F follows a base world (`BlackScholes`, `Heston`, `Merton`, ...). A
population of hedgers holds an option book (quantities per share outstanding) and
delta-hedges it continuously, so its demand for shares is h(t, S) = -delta_book(t, S) under
the hedgers' model. Their net demand moves the observed price through linear, permanent
market impact in log price (Frey and Stremme 1997, "Market volatility and feedback effects
from dynamic hedging", Math. Finance 7(4); Platen and Schweizer 1998, "On feedback effects
from hedging derivatives", Math. Finance 8(1); Sircar and Papanicolaou 1998, "General
Black-Scholes models accounting for increased market volatility from hedging strategies",
Appl. Math. Finance 5(1)). Market clearing at every grid time:

    log S_t = log F_t + rho (h(t, S_t) - h(0, S_0)),        S_0 = F_0 = spot.

To first order in a step, d log S (1 - rho S dh/dS) = d log F, so the observed volatility is

    sigma_eff = sigma / (1 - rho S dh/dS) = sigma / (1 + rho S Gamma_book),

Gamma_book the gamma of the hedgers' option book. Short-gamma hedgers (portfolio insurers
synthesising puts: book quantity < 0, dh/dS > 0) buy as the price rises and sell as it falls:
they amplify. Long-gamma hedgers (market makers long options: dh/dS < 0) dampen.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._exotics import AbstractPathDependent
from .._instruments import AbstractInstrument, Book, EuropeanCall, EuropeanPut, as_book
from .._pricing.registry import book_value_log, has_pricer
from .._random import Draws
from .._validate import as_float, check_nonnegative, check_positive, is_concrete
from .base import AbstractModel, ModelState

# Iterations of the safeguarded Newton solve of the market-clearing equation: bisection
# alone halves a bracket of width <= 4 rho H (module docstring) to below float64's
# resolution in about 60; Newton from the previous price takes 3-5 on regular steps.
_MAX_ITERATIONS = 80


def _default_hedge_model(model: AbstractModel) -> AbstractModel:
    try:
        return model.risk_neutral()
    except ValueError as error:     # e.g. historical worlds carry no measure
        raise ValueError(
            f"hedge_model must be given for a {type(model).__name__} world (it has no "
            "risk-neutral model to price the hedgers' book): pass hedge_model="
            "BlackScholes(...)") from error


class Feedback(AbstractModel):
    """A base world whose price is moved by the aggregate trades of delta hedgers.

    Args:
        model: the base world (any `AbstractModel`); it drives the FUNDAMENTAL value F,
            with its own random draws (the same streams as on its own).
        hedgers: the option book the hedging population holds (`hj.Book` or one
            instrument; European calls and puts), quantities as a fraction of the shares
            outstanding (-0.05: hedgers short puts on 5% of the float; < 0 is short gamma,
            portfolio insurers synthesising puts; > 0 long gamma, e.g. market makers long
            options). They hold h(t, S) = -delta_book(t, S) shares (same units) at every grid
            time: the continuous delta hedge on the grid. Options expired at t are dropped
            (the hedgers unwind, and that unwinding moves the price too).
        impact: rho >= 0, the permanent log-price impact per unit of net demand: buying a
            fraction x of the float moves log S by rho x (rho = 1: buying 1% of the float
            lifts the price by ~1%). Units: the reciprocal of the book's quantity units.
        hedge_model: the model whose deltas the hedgers use (priced at the observed price,
            conditioned on the base state, e.g. Heston's variance). Default: the base
            world's `risk_neutral()` (a world without one, e.g. historical data, needs it).

    Dynamics. With h0 = h(0, S_0), each step the base world moves F and the observed price
    solves the market-clearing equation log S = log F + rho (h(t, S) - h0) (module
    docstring). The solve is a Newton iteration in log price safeguarded by bisection (a
    `lax.while_loop`, all paths at once), started at the previous price, inside the bracket
    |log S - log F| <= 2 rho H, H = sum |quantity| max(1, e^{-div T}) (a bound on the
    hedgers' demand for calls and puts: no equilibrium lies outside it). Gradients flow by
    the implicit function theorem (one Newton step at the solution).

    Illiquidity limit. Where rho S dh/dS >= 1 (the Frey-Stremme threshold: for short-gamma
    hedgers, rho S |Gamma_book| >= 1, near the strike close to expiry) the local equilibrium
    branch can vanish: no continuous price path exists. The price then GAPS: the solve
    starts at the previous price and returns an equilibrium in the direction the market is
    pushed (between the previous price and the bracket's far end; the nearest one where the
    equation is monotone there), a jump in the observed price: the feedback crash (or
    squeeze). `illiquidity(spot, t)` reports rho S dh/dS. A non-finite price (e.g. the hedge
    model's price overflowing) raises an error, never a silent NaN.

    Exact limits: with impact 0, or quantities 0, every path is the base world's, bit for
    bit (the same draws, plus an exact 0). With impact > 0 the observed price carries the
    feedback's extra drift and is not a martingale under the base's measure.

    State: `ModelState(log_spot=log S, variance=base variance (Heston: passes through for
    strategies and conditioned hedge models), aux=the base world's own state)`.
    `bridge_variance` is None: barrier monitoring between grid points is not modelled
    (gaps make the Brownian bridge wrong). There is no closed-form price: pass
    `hedge_model=` to `hj.hedge` (e.g. the base model).

    Example:
        >>> import hedgejax as hj, jax
        >>> insurers = hj.Book([hj.EuropeanPut(95.0, 1.0)], quantities=[-0.05])
        >>> world = hj.Feedback(hj.BlackScholes(100.0, 0.2), insurers, impact=1.0)
        >>> float(world.illiquidity()) > 0      # short gamma: amplifies
        True
        >>> paths = hj.simulate(world, hj.TimeGrid(10 / 252, 10), 4, jax.random.key(0))
        >>> paths.shape
        (4, 11)
    """

    model: AbstractModel
    hedgers: Book
    impact: jax.Array
    hedge_model: AbstractModel
    vega_field: ClassVar[str] = ""

    def __init__(self, model, hedgers, impact, hedge_model=None):
        if not isinstance(model, AbstractModel):
            raise ValueError(f"model must be a model (e.g. BlackScholes), got "
                             f"{type(model).__name__}")
        if not isinstance(hedgers, (Book, AbstractInstrument)):
            raise ValueError(f"hedgers must be a Book or an instrument, got "
                             f"{type(hedgers).__name__}")
        hedgers = as_book(hedgers)
        for group in hedgers.groups:
            if isinstance(group, AbstractPathDependent) or not isinstance(
                    group, (EuropeanCall, EuropeanPut)):
                raise ValueError(
                    "hedgers must hold European calls and puts (their demand is then bounded, "
                    f"which bounds the market-clearing solve), got {type(group).__name__}")
        hedge_model = _default_hedge_model(model) if hedge_model is None else hedge_model
        if not isinstance(hedge_model, AbstractModel):
            raise ValueError(f"hedge_model must be a model, got {type(hedge_model).__name__}")
        if not has_pricer(hedge_model, hedgers):
            raise ValueError(
                f"hedge_model must be able to price the hedgers' book; "
                f"{type(hedge_model).__name__} cannot (pass hedge_model=BlackScholes(...))")
        self.model = model
        self.hedgers = hedgers
        self.impact = as_float(impact, "impact", scalar=True)
        self.hedge_model = hedge_model

    def __check_init__(self):
        check_nonnegative("impact", self.impact)

    # The contract's spot, rate and dividend yield are the base world's.
    @property
    def spot(self) -> jax.Array:
        return self.model.spot

    @property
    def rate(self) -> jax.Array:
        return self.model.rate

    @property
    def div(self) -> jax.Array:
        return self.model.div

    @property
    def max_paths(self) -> int | None:
        return self.model.max_paths

    def check_grid(self, grid) -> None:
        """The base world's grid check (data-backed worlds refuse grids past their data)."""
        check = getattr(self.model, "check_grid", None)
        if check is not None:
            check(grid)

    def _demand(self, base: ModelState, log_spot: jax.Array, t: jax.Array):
        """Hedgers' shares h(t, S) and rho-free slope S dh/dS at log price `log_spot`."""
        hedge_model = self.hedge_model.conditioned(base)
        t = jnp.asarray(t, log_spot.dtype)
        alive = tuple(g.maturity > t for g in self.hedgers.groups)

        def value(x):
            return book_value_log(hedge_model, self.hedgers, x, t, alive)

        def slope(x):
            return jax.jvp(value, (x,), (jnp.ones_like(x),))[1]

        v_x, v_xx = jax.jvp(slope, (log_spot,), (jnp.ones_like(log_spot),))
        inv_spot = jnp.exp(-log_spot)
        # h = -dV/dS = -V_x / S; S dh/dS = dh/dlogS = -(V_xx - V_x) / S = -S Gamma_book
        return -v_x * inv_spot, -(v_xx - v_x) * inv_spot

    def _bound(self, dtype) -> jax.Array:
        """H: a bound on |h| for a book of calls and puts, with a 1% margin."""
        total = jnp.zeros((), dtype)
        for group, qty in zip(self.hedgers.groups, self.hedgers.quantities, strict=True):
            carry = jnp.maximum(1.0, jnp.exp(-self.div * jnp.max(group.maturity)))
            total = total + jnp.sum(jnp.abs(qty)).astype(dtype) * carry.astype(dtype)
        return 1.01 * total

    def _initial_demand(self, base: ModelState) -> jax.Array:
        return self._demand(base, base.log_spot, 0.0)[0]

    def init(self, path_index: jax.Array) -> ModelState:
        base = self.model.init(path_index)
        return ModelState(log_spot=base.log_spot, variance=base.variance, aux=base)

    def step(self, state: ModelState, t: jax.Array, dt: float, draws: Draws) -> ModelState:
        base0 = state.aux
        base = self.model.step(base0, t, dt, draws)
        log_fundamental = base.log_spot
        dtype = log_fundamental.dtype
        t_next = jnp.asarray(t, dtype) + dt
        frozen = jax.tree.map(
            lambda x: lax.stop_gradient(x) if eqx.is_inexact_array(x) else x, self)

        def clearing(model, base, d):
            """g(d) = d - rho (h(F e^d) - h0) and g'(d), d = log S - log F."""
            h0 = model._initial_demand(model.model.init(jnp.zeros((), jnp.int32)))
            h, slope = model._demand(base, base.log_spot + d, t_next)
            rho = jnp.asarray(model.impact, dtype)
            return d - rho * (h - jnp.asarray(h0, dtype)), 1.0 - rho * slope

        # the solve sees no derivatives (a while_loop has no reverse mode)
        still = jax.tree.map(lax.stop_gradient, base)
        bound = 2.0 * frozen.impact.astype(dtype) * frozen._bound(dtype)
        start = lax.stop_gradient(state.log_spot.astype(dtype) - log_fundamental)
        solved = _solve(lambda d: clearing(frozen, still, d), start, bound)
        # one differentiable Newton step at the solution: implicit-function-theorem
        # gradients, and an exact no-op when the solution is exact (rho = 0 gives d = 0)
        g, g_prime = clearing(self, base, solved)
        displacement = solved - g / g_prime
        log_spot = log_fundamental + displacement
        log_spot = eqx.error_if(
            log_spot, ~jnp.all(jnp.isfinite(log_spot)),
            "Feedback: the observed price is not finite (the hedgers' model gave a "
            "non-finite delta or gamma); check the hedgers' book and hedge_model")
        return ModelState(log_spot=log_spot, variance=base.variance, aux=base)

    def illiquidity(self, spot=None, t=0.0) -> jax.Array:
        """rho S dh/dS = -rho S Gamma_book at `spot` (currency; default the model's) and time
        `t` (years), elementwise over `spot`: > 0 amplifies (short-gamma hedgers), < 0
        dampens; the observed vol is sigma / (1 - illiquidity) to first order, and no
        continuous equilibrium exists where it is >= 1 (Frey and Stremme 1997)."""
        spot = self.spot if spot is None else as_float(spot, "spot")
        t = as_float(t, "t")
        check_positive("spot", spot)
        check_nonnegative("t", t)
        log_spot = jnp.log(spot)
        base = self.model.init(jnp.zeros(jnp.shape(log_spot), jnp.int32))
        base = base._replace(log_spot=log_spot)
        return self.impact * self._demand(base, log_spot, t)[1]

    def effective_vol(self, vol, spot=None, t=0.0) -> jax.Array:
        """sigma / (1 - rho S dh/dS): the first-order observed vol of a base world of vol
        `vol` (annual) at `spot`, `t` (Frey and Stremme 1997, Sircar and Papanicolaou 1998).
        Raises ValueError (concrete inputs) past the illiquidity threshold."""
        vol = as_float(vol, "vol")
        check_positive("vol", vol)
        level = self.illiquidity(spot, t)
        if is_concrete(level) and np.any(np.asarray(level) >= 1.0):
            raise ValueError(
                "effective_vol is undefined where rho S dh/dS >= 1 (the Frey-Stremme "
                f"illiquidity threshold: the price gaps), got rho S dh/dS = "
                f"{np.max(np.asarray(level)):.4g}")
        return vol / (1.0 - level)

    def risk_neutral(self) -> Feedback:
        """The feedback world over the base's risk-neutral fundamental (the observed price
        then carries the feedback's own drift: it is not exactly a martingale)."""
        return Feedback(self.model.risk_neutral(), self.hedgers, self.impact,
                        self.hedge_model)

    def prepared(self, horizon: float | None = None, dt: float | None = None) -> Feedback:
        """The base prepared for (`horizon`, `dt`), the hedgers' model for the book's
        longest maturity (its deltas are priced inside every step)."""
        maturities = [g.maturity for g in self.hedgers.groups]
        longest = None
        if all(is_concrete(m) for m in maturities):
            longest = max(float(np.max(np.asarray(m))) for m in maturities)
        base = self.model.prepared(horizon, dt)
        hedge_model = self.hedge_model.prepared(longest)
        if base is self.model and hedge_model is self.hedge_model:
            return self
        return eqx.tree_at(lambda m: (m.model, m.hedge_model), self, (base, hedge_model))

    def conditioned(self, state: ModelState) -> AbstractModel:
        return self

    def bridge_variance(self, state: ModelState) -> None:
        """None: grid points only (see the class docstring)."""
        return None


def _solve(clearing, start: jax.Array, bound: jax.Array) -> jax.Array:
    """A root of g (`clearing(d) -> (g, g')`, g increasing at +-bound's ends: g(-bound) <= 0
    <= g(bound)) per path: Newton from `start`, kept inside a bracket that starts on the side
    of `start` that g's sign points to, bisecting when a Newton step leaves it or g' <= 0
    (Press et al., Numerical Recipes, "rtsafe"). No derivative (see `Feedback.step`)."""
    dtype = start.dtype
    tol = 4.0 * float(jnp.finfo(dtype).eps)
    g0, _ = clearing(start)
    up = g0 < 0
    lo = jnp.where(up, jnp.clip(start, -bound, bound), -bound)
    hi = jnp.where(up, bound, jnp.clip(start, -bound, bound))
    d = jnp.clip(start, -bound, bound)

    def cond(carry):
        i, _, _, _, active = carry
        return (i < _MAX_ITERATIONS) & jnp.any(active)

    def body(carry):
        i, d, lo, hi, active = carry
        g, g_prime = clearing(d)
        lo = jnp.where(g < 0, d, lo)
        hi = jnp.where(g > 0, d, hi)
        newton = d - g / jnp.where(g_prime > 0, g_prime, 1.0)
        inside = (g_prime > 0) & (newton >= lo) & (newton <= hi) & jnp.isfinite(newton)
        new = jnp.where(inside, newton, 0.5 * (lo + hi))
        new = jnp.where(g == 0, d, new)
        done = (jnp.abs(new - d) <= tol * (1.0 + jnp.abs(d))) | (hi - lo <= tol)
        new = jnp.where(active, new, d)
        return i + 1, new, lo, hi, active & ~done

    active = jnp.ones(start.shape, bool)
    _, d, _, _, _ = lax.while_loop(cond, body, (0, d, lo, hi, active))
    return d
