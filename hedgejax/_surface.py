"""Price surfaces: the hedge model's book value as a cheap interpolant for `hedge()`.

Hedging with a model that has no closed form (Heston's Fourier integral, Merton's Poisson
series) prices the book per path at every step: hundreds of times the cost of a
Black-Scholes step. A surface is built once per `hedge()` call instead, from vmapped calls of
the exact pricer at interpolation nodes, and evaluated per path per step.

Method. Tensor Chebyshev interpolation (Gass, Glau, Mahlstedt and Mair, "Chebyshev
interpolation for parametric option pricing", Finance Stoch. 22, 2018; Trefethen,
"Approximation Theory and Approximation Practice", 2013, ch. 3 for the coefficients by the
discrete cosine transform) of the *residual* against a Black-Scholes control variate:

    V(t_i, x, v) = B(t_i, x, v) + R_i(x, v),

where x is the log-spot, v the current variance (Heston; Merton has no state variable),
B the Black-Scholes value of each instrument with the model's expected mean volatility over
its remaining life (Heston: w = theta + (v - theta)(1 - e^{-kappa tau}) /
(kappa tau), the expected average variance; Merton: the diffusion vol, which is what the
price tends to near expiry) and R_i a tensor Chebyshev interpolant at grid step i. B is
computed exactly per path (a few exp/erf), so the payoff's kink and the steep gamma near
expiry are in B; R is smooth (it is not small: Heston's skew makes it up to about 1% of
spot).

Per instrument. Each instrument of the book gets its own interpolant in its own
coordinates (a book's strikes and maturities would otherwise need one grid fine enough for
all of them); the book's value is the quantity-weighted sum, with instruments that have
expired at a step left out, as the exact pricer does.

Coordinates and nodes. Chebyshev points of the first kind in three coordinates:
- time: s = sqrt(tau), tau the instrument's time to maturity, n_t nodes over the values
  tau takes on the grid's steps while it is alive; the coefficients are then contracted
  to one (n_x, n_v) table per grid step when the surface is built, so a step costs no
  time interpolation (measured: 12 and 24 time nodes give the same errors, the error is in
  the other two coordinates);
- log-spot: u = asinh((x - c) / l) / asinh(reach / l), c the log forward strike, l the
  control variate's standard deviation of the log-spot to maturity, reach = the distance
  from c to log(S0) plus 10 standard deviations of the log-spot over the horizon (the
  world's and the hedge model's mean variance, the larger): nodes are dense at the strike
  when l is small (short maturities) and still reach far out of the money;
- variance (Heston): y = log(v + c_v) on [0, v_hi], v_hi covering the stationary and
  horizon law of the world's and the hedge model's variance to about 1e-7, c_v = max(v0,
  theta) / 10 (more nodes at small variance).
States outside the domain are clamped to its edge in R (B is still exact there).

Greeks. Delta and gamma by forward-mode autodiff in x of B + R (the same code path as the
exact pricer's Greeks); vega against the hedge model's `vega_field`: for Heston (v0) through
the v dimension, for Merton (vol) from a second interpolant of the residual's vega, built from
the exact pricer's vega at the same nodes. Every coefficient is a linear function of exact
node values, so gradients with respect to the hedge model's parameters pass through.

Accuracy (experiments/surface_accuracy.py, experiments/results/surface_accuracy.md; float32,
held-out states of simulated paths, default nodes 32 x 10 x 16): Merton prices within 2e-6
of spot and deltas within 9e-5; Heston prices within 8e-5 of spot, deltas within 1e-4 at
the median but up to 2e-2 at the worst states (near-zero variance, days before expiry),
gammas far off there (the second derivative of the interpolant); 64 x 14 nodes cut the
Heston errors 5-20x. Hedge P&L mean and std agree with the exact pricer's within 0.15
standard errors on common random numbers. Interpolation noise of about 1e-6 share per unit
in deltas means a delta hedge trades on steps where the exact delta is constant, so
`hedge(pricing="auto")` prices exactly when a cost is charged per trade.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._exotics import AbstractPathDependent
from ._instruments import Book
from ._models.base import AbstractModel, ModelState
from ._models.black_scholes import BlackScholes
from ._models.heston import Heston
from ._models.merton import Merton
from ._numerics import ordered_sum
from ._pricing.registry import _PRICERS

# Half-width of the log-spot domain in standard deviations over the horizon.
_WIDTH_SD = 10.0
# The most nodes per instrument (PriceSurface).
MAX_NODES = 2**16
# Where the variance coordinate y = log(v + shift) puts its nodes: shift = this x the model's
# larger of v0 and theta.
_SHIFT = 0.1


class PriceSurface(eqx.Module):
    """`hedge(..., pricing=PriceSurface(...))`: price surfaces with chosen node counts
    (`pricing="surface"` is `PriceSurface()`, 32 x 10 x 16). More nodes: more accurate,
    slower per path (the work per path and step grows with n_x x n_v); n_t only changes the
    build.

    Args:
        n_x: Chebyshev nodes in the log-spot coordinate: u = asinh((log S - c) / l) /
            asinh(reach / l), c the log forward strike, l the control variate's standard
            deviation of log S to maturity (integer in [4, 256]).
        n_v: nodes in y = log(v + shift), v the annual variance (Heston; integer in
            [2, 256]; unused by Merton).
        n_t: nodes in sqrt(time to maturity in years) (integer in [2, 256]).

    n_x x n_v x n_t is at most 65,536: the exact pricer runs at every node of an
    instrument at once. Raises ValueError naming the count otherwise. Method and sources:
    module `hedgejax._surface` (Gass, Glau, Mahlstedt and Mair 2018). Measured accuracy
    per setting: experiments/results/surface_accuracy.md.
    """

    n_x: int = eqx.field(static=True, default=32)
    n_v: int = eqx.field(static=True, default=10)
    n_t: int = eqx.field(static=True, default=16)

    def __init__(self, n_x: int = 32, n_v: int = 10, n_t: int = 16):
        for name, value, low in (("n_x", n_x, 4), ("n_v", n_v, 2), ("n_t", n_t, 2)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) \
                    or not low <= value <= 256:
                raise ValueError(f"PriceSurface.{name} must be an integer in [{low}, 256], "
                                 f"got {name}={value!r}")
        if int(n_x) * int(n_v) * int(n_t) > MAX_NODES:
            raise ValueError(f"PriceSurface.n_x x n_v x n_t must be at most {MAX_NODES:,} (the "
                             "exact pricer runs at every node at once), got "
                             f"n_x={n_x}, n_v={n_v}, n_t={n_t}")
        self.n_x, self.n_v, self.n_t = int(n_x), int(n_v), int(n_t)


PRICINGS = ("auto", "exact", "surface")


def supports_surface(model: AbstractModel, book: Book) -> bool:
    """Whether a surface can stand in for `model`'s prices of `book`: the model is one whose
    pricer is expensive (Heston, Merton) and every instrument has a Black-Scholes price (the
    control variate)."""
    if type(model) not in (Heston, Merton):
        return False
    if any(isinstance(g, AbstractPathDependent) for g in book.groups):
        return False    # the path state is not a surface coordinate
    return all((BlackScholes, type(g)) in _PRICERS for g in book.groups)


def _base_vol(model: AbstractModel, tau: jax.Array, variance) -> jax.Array:
    """The control variate's Black-Scholes vol for time to maturity `tau`."""
    if isinstance(model, Heston):
        v = model.v0 if variance is None else variance
        kt = model.kappa * jnp.maximum(tau, 0.0)
        small = kt < 1e-4
        kt_safe = jnp.where(small, 1.0, kt)
        frac = jnp.where(small, 1.0 - 0.5 * kt, -jnp.expm1(-kt_safe) / kt_safe)
        w = model.theta + (v - model.theta) * frac
        return jnp.sqrt(jnp.maximum(w, 1e-4))
    return model.vol


def _local_scale(model, tau, variance) -> jax.Array:
    """The x coordinate's scale: the control variate's log-spot standard deviation over
    `tau`."""
    return _base_vol(model, tau, variance) * jnp.sqrt(tau) + 1e-6


def _base_price(model, inst, log_spot, t, variance) -> jax.Array:
    """B: one instrument's Black-Scholes price with the `_base_vol` of its time to
    maturity."""
    tau = inst.maturity - t
    vol = _base_vol(model, tau, variance)
    bs = eqx.tree_at(lambda m: (m.vol, m.rate, m.div), BlackScholes(1.0, 0.2),
                     (vol, model.rate, model.div))
    return _PRICERS[(BlackScholes, type(inst))](bs, inst, log_spot, tau)


def _chebyshev_matrix(n: int, dtype) -> np.ndarray:
    """M with coefficients c = M f from values f at the n Chebyshev points of the first kind
    u_j = cos(pi (j + 1/2) / n): c_k = (2 - [k = 0]) / n sum_j f_j cos(pi k (j + 1/2) / n)."""
    j = np.arange(n) + 0.5
    k = np.arange(n)[:, None]
    m = 2.0 / n * np.cos(np.pi * k * j / n)
    m[0] *= 0.5
    return m.astype(dtype)


def _nodes(n: int) -> np.ndarray:
    return np.cos(np.pi * (np.arange(n) + 0.5) / n)


def _basis(u: jax.Array, n: int) -> list[jax.Array]:
    """T_0(u) .. T_{n-1}(u) by the three-term recurrence."""
    out = [jnp.ones_like(u), u]
    for _ in range(n - 2):
        out.append(2.0 * u * out[-1] - out[-2])
    return out[:n]


def _mean_variance(model: AbstractModel) -> jax.Array | None:
    """A typical annual variance of the log-spot under `model` (None: unknown)."""
    if isinstance(model, Heston):
        return jnp.maximum(model.v0, model.theta)
    if isinstance(model, Merton):
        return jnp.square(model.total_vol)
    if isinstance(model, BlackScholes):
        return jnp.square(model.vol)
    return None


def _variance_top(model: Heston) -> jax.Array:
    """An upper bound of the CIR variance over any horizon to about 1e-7: the mean level plus
    8 stationary standard deviations plus 16 scales of its gamma law's exponential tail."""
    m = jnp.maximum(model.v0, model.theta)
    scale = model.xi * model.xi / (2.0 * model.kappa)
    return m + 8.0 * jnp.sqrt(m * scale) + 16.0 * scale


class GroupSurface(eqx.Module):
    """The interpolants of one group of a book (one per instrument, leading axis).

    Attributes:
        coef: Chebyshev coefficients of the residual R per instrument and grid step, shape
            (n_instruments, n_steps + 1, n_x, n_v).
        vega_coef: coefficients of the residual's vega (models without a state variance),
            shape (n_instruments, n_steps + 1, n_x, 1); None otherwise.
        center: per instrument and step, the log-spot the x coordinate is centred on (log
            strike less the carry to maturity), shape (n_instruments, n_steps + 1).
        tau: per instrument and step, the time to maturity (floored at dt / 2).
        reach: per instrument, the half-width of the log-spot domain.
        initial: per instrument, the exact price at t = 0 and the world's spot (V0's part),
            from the same call of the exact pricer as the nodes.
    """

    coef: jax.Array
    vega_coef: jax.Array | None
    center: jax.Array
    tau: jax.Array
    reach: jax.Array
    initial: jax.Array


class BookSurface(eqx.Module):
    """A book's value under a hedge model at every step of a time grid: per instrument, the
    Black-Scholes control variate plus a Chebyshev interpolant of the residual in
    (log-moneyness, variance) at each grid step (module docstring).

    Attributes:
        groups: one `GroupSurface` per group of the book.
        y_mid, y_half, shift: the variance domain in y = log(v + shift) (Heston).
        model: the hedge model (its parameters drive the control variate).
        book: the book.
        dt: the grid's step (years).
    """

    groups: tuple[GroupSurface, ...]
    y_mid: jax.Array
    y_half: jax.Array
    shift: jax.Array
    model: AbstractModel
    book: Book
    dt: float = eqx.field(static=True)

    @property
    def has_variance(self) -> bool:
        return self.groups[0].coef.shape[-1] > 1

    @property
    def initial(self) -> jax.Array:
        """V0: the book's exact value at t = 0 and the world's spot."""
        total = jnp.zeros(())
        for g, qty in zip(self.groups, self.book.quantities, strict=True):
            total = total + ordered_sum(qty * g.initial, axis=0)
        return total

    def _variance(self, variance, log_spot):
        if variance is None:
            variance = self.model.v0 if isinstance(self.model, Heston) else None
        return None if variance is None else jnp.broadcast_to(variance, log_spot.shape)

    def _residual(self, coef, center, tau, reach, log_spot, variance):
        """One instrument's R at one step: u = asinh((x - c) / l) / asinh(reach / l), with
        l the control variate's standard deviation of the log-spot to maturity, so nodes
        are dense at the strike at short maturities and still reach the domain's edge."""
        tau = tau.astype(log_spot.dtype)
        local = _local_scale(self.model, tau, variance)
        alpha = jnp.arcsinh(reach / local)
        u = jnp.clip(jnp.arcsinh((log_spot - center) / local) / alpha, -1.0, 1.0)
        tx = _basis(u, coef.shape[0])
        if coef.shape[1] == 1:
            weights = [coef[a, 0] for a in range(coef.shape[0])]
        else:
            y = jnp.log(variance + self.shift)
            s = jnp.clip((y - self.y_mid) / self.y_half, -1.0, 1.0)
            tv = jnp.stack(_basis(s, coef.shape[1]))          # (n_v, *paths)
            w = jnp.tensordot(coef, tv, axes=(1, 0))              # (n_x, *paths)
            weights = [w[a] for a in range(coef.shape[0])]
        total = weights[-1] * tx[-1]
        for a in range(coef.shape[0] - 2, -1, -1):
            total = total + weights[a] * tx[a]
        return total

    def _sum(self, step, log_spot, alive, one):
        """sum over instruments of quantity x one(group surface slice, instrument), alive
        ones only, in the order of `book_value_log`."""
        total = jnp.zeros_like(log_spot)
        for k, (g, group, qty) in enumerate(zip(self.groups, self.book.groups,
                                                self.book.quantities, strict=True)):
            live = jnp.ones(qty.shape, bool) if alive is None else alive[k]

            def each(gs, inst, q, live_i):
                return jnp.where(live_i, q * one(gs, inst), 0.0)

            total = total + ordered_sum(jax.vmap(each)(g, group, qty, live), axis=0)
        return total

    def value(self, step, log_spot, variance=None, alive=None) -> jax.Array:
        """The book's value at grid step `step` (time step x dt) per path."""
        t = jnp.asarray(step, log_spot.dtype) * self.dt
        variance = self._variance(variance, log_spot)

        def one(gs, inst):
            coef = lax.dynamic_index_in_dim(gs.coef, step, keepdims=False)
            r = self._residual(coef.astype(log_spot.dtype), gs.center[step], gs.tau[step],
                               gs.reach, log_spot, variance)
            return _base_price(self.model, inst, log_spot, t, variance) + r

        return self._sum(step, log_spot, alive, one)

    def greeks(self, step, log_spot, spot, variance=None, alive=None):
        """(delta, gamma, vega) per path at grid step `step` (vega None when the hedge model
        has no `vega_field`), by forward-mode autodiff of the interpolant with the chain rule
        from log-spot: dV/dS = V_x / S, d2V/dS2 = (V_xx - V_x) / S^2."""
        variance = self._variance(variance, log_spot)

        def value(x):
            return self.value(step, x, variance, alive)

        def slope(x):
            return jax.jvp(value, (x,), (jnp.ones_like(x),))[1]

        v_x, v_xx = jax.jvp(slope, (log_spot,), (jnp.ones_like(log_spot),))
        delta = v_x / spot
        gamma = (v_xx - v_x) / (spot * spot)
        if self.has_variance:
            _, vega = jax.jvp(lambda v: self.value(step, log_spot, v, alive), (variance,),
                              (jnp.ones_like(variance),))
        elif self.model.vega_field and self.groups[0].vega_coef is not None:
            vega = self._vega(step, log_spot, alive)
        else:
            vega = None
        return delta, gamma, vega

    def _vega(self, step, log_spot, alive):
        """Vega against the model's `vega_field` (Merton's vol): the control variate's by
        autodiff plus the residual's from its own interpolant."""
        name = self.model.vega_field
        t = jnp.asarray(step, log_spot.dtype) * self.dt

        def one(gs, inst):
            def base_at(p):
                bumped = eqx.tree_at(lambda m: getattr(m, name), self.model, p)
                return _base_price(bumped, inst, log_spot, t, None)

            p0 = getattr(self.model, name)
            _, base_vega = jax.jvp(base_at, (p0,), (jnp.ones_like(p0),))
            coef = lax.dynamic_index_in_dim(gs.vega_coef, step, keepdims=False)
            return base_vega + self._residual(coef.astype(log_spot.dtype), gs.center[step],
                                              gs.tau[step], gs.reach, log_spot, None)

        return self._sum(step, log_spot, alive, one)


def build(model: AbstractModel, book: Book, expiry, world: AbstractModel, grid,
          dtype, spec: PriceSurface = PriceSurface()) -> BookSurface:
    """The surface of `book`'s value under `model` at every step of `grid` (traced inside
    `hedge()`'s compiled call; differentiable in the model's parameters through the node
    values). `world` is the model the paths follow: it sets the domain (log-spot spread and,
    for a Heston world, the range of the variance the hedger observes). `expiry` is each
    instrument's expiry step (it contributes nothing from that step on)."""
    n, dt = grid.n_steps, grid.dt
    n_x, n_v, n_t = spec.n_x, spec.n_v, spec.n_t
    sg = lax.stop_gradient
    steps = jnp.arange(n + 1, dtype=jnp.int32)
    t_steps = steps.astype(dtype) * dt
    spreads = [s for s in (_mean_variance(model), _mean_variance(world)) if s is not None]
    var = sg(jnp.max(jnp.stack([jnp.asarray(s, dtype) for s in spreads])))
    x0 = jnp.log(jnp.asarray(world.spot, dtype))
    width = _WIDTH_SD * jnp.sqrt(var * grid.maturity)
    has_variance = isinstance(model, Heston)
    if has_variance:
        tops = [_variance_top(model)] + ([_variance_top(world)] if isinstance(world, Heston)
                                          else [])
        top = sg(jnp.max(jnp.stack([jnp.asarray(x, dtype) for x in tops])))
        top = jnp.maximum(top, sg(jnp.asarray(model.v0, dtype)))
        shift = _SHIFT * sg(jnp.maximum(jnp.maximum(model.v0, model.theta), 1e-4)).astype(dtype)
        y_lo, y_hi = jnp.log(shift), jnp.log(top + shift)
        y_mid, y_half = 0.5 * (y_hi + y_lo), 0.5 * (y_hi - y_lo)
        v_nodes = jnp.exp(y_mid + y_half * jnp.asarray(_nodes(n_v), dtype)) - shift
        v_nodes = jnp.maximum(v_nodes, 0.0)
        # every (step, x, v) node, then V0's point (the hedge model's own v0)
        vs = jnp.concatenate([jnp.tile(v_nodes, n_t * n_x),
                              jnp.asarray(model.v0, dtype)[None]])
        vv = v_nodes[None, None, :]
    else:
        n_v = 1
        shift = y_mid = y_half = jnp.zeros((), dtype)
        vs = vv = None
    size = n_x * n_v
    mt = jnp.asarray(_chebyshev_matrix(n_t, np.float64), dtype)
    mx = jnp.asarray(_chebyshev_matrix(n_x, np.float64), dtype)
    mv = jnp.asarray(_chebyshev_matrix(n_v, np.float64), dtype)
    u = jnp.asarray(_nodes(n_x), dtype)[None, :, None]
    carry = jnp.asarray(model.rate - model.div, dtype)

    groups = []
    for group, e in zip(book.groups, expiry, strict=True):
        fn = _PRICERS[(type(model), type(group))]

        def nodes(inst, e_i, fn=fn):
            """One instrument's residual at its nodes in (sqrt(tau), u, y), then its
            coefficients at every grid step (and V0's exact point)."""
            maturity = inst.maturity.astype(dtype)
            tau = sg(jnp.maximum(maturity - t_steps, 0.5 * dt))
            center = sg(jnp.log(inst.strike).astype(dtype) - carry * tau)
            reach = sg(jnp.max(jnp.abs(x0 - center)) + width + 1e-3)
            # Chebyshev nodes in s = sqrt(tau) over the times to maturity of the alive steps
            alive = e_i > steps
            s_steps = jnp.sqrt(tau)
            s_lo = jnp.min(jnp.where(alive, s_steps, jnp.inf))
            s_hi = jnp.max(jnp.where(alive, s_steps, -jnp.inf))
            s_mid, s_half = 0.5 * (s_hi + s_lo), 0.5 * (s_hi - s_lo) + 1e-7
            tau_n = jnp.square(s_mid + s_half * jnp.asarray(_nodes(n_t), dtype))   # (n_t,)
            center_n = jnp.log(inst.strike).astype(dtype) - carry * tau_n
            local = _local_scale(model, tau_n[:, None, None], vv)
            alpha = jnp.arcsinh(reach / local)
            x = center_n[:, None, None] + local * jnp.sinh(alpha * u)
            xs = jnp.concatenate([jnp.broadcast_to(x, (n_t, n_x, n_v)).reshape(-1),
                                  x0[None]])
            taus = jnp.concatenate([jnp.repeat(tau_n, size), maturity[None]])
            ts = maturity - taus

            def residual(m):
                exact = fn(m.conditioned(ModelState(log_spot=xs, variance=vs)), inst, xs,
                           taus)
                return exact - _base_price(m, inst, xs, ts, vs), exact

            # per step: T_c(s_i) x the coefficients in (s, u, y); dead steps are masked later
            s_hat = jnp.clip((s_steps - s_mid) / s_half, -1.0, 1.0)
            at_steps = jnp.stack(_basis(s_hat, n_t), axis=1)         # (n + 1, n_t)

            def coefficients(values):
                c = jnp.einsum("ct,txv->cxv", mt, values[:-1].reshape(n_t, n_x, n_v))
                c = jnp.einsum("ax,cxv,bv->cab", mx, c, mv)
                return jnp.einsum("ic,cab->iab", at_steps, c)

            (r, exact) = residual(model)
            vega = None
            name = model.vega_field
            if not has_variance and name:
                def residual_of(p):
                    return residual(eqx.tree_at(lambda m: getattr(m, name), model, p))[0]

                p0 = getattr(model, name)
                vega = coefficients(jax.jvp(residual_of, (p0,), (jnp.ones_like(p0),))[1])
            return GroupSurface(coef=coefficients(r), vega_coef=vega, center=center, tau=tau,
                                reach=reach, initial=exact[-1])

        groups.append(jax.vmap(nodes)(group, e))
    return BookSurface(groups=tuple(groups), y_mid=y_mid, y_half=y_half, shift=shift,
                       model=model, book=book, dt=dt)
