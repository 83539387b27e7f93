"""Independent reference prices and Greeks of European options under Heston (1993).

Plain Python (QuantLib, mpmath, math): nothing here imports hedgejax, so the numbers can judge
hedgejax's pricer. Used by tests/test_heston_reference.py and experiments/heston_accuracy.py.

Model (risk-neutral, time in years, annual variances):

    dS/S = (r - q) dt + sqrt(v) dW1,   dv = kappa (theta - v) dt + xi sqrt(v) dW2,
    d<W1, W2> = rho dt.

A case is a `Case` (option kind, spot, v0, kappa, theta, xi, rho, rate, div, strike, T).

References, from cheap to expensive:

1. QuantLib 1.44 (`ql_price`, `ql_prices`). Engines in `QL_ENGINES`:

   - "angled_expsinh": AnalyticHestonEngine with Andersen-Lake's angled integration contour
     and optimal damping (`AngledContour`) plus QuantLib's Black-Scholes control variate,
     integrated by exp-sinh quadrature at relative tolerance 1e-13. Andersen and Lake,
     "Robust high-precision option pricing by Fourier transforms: contour deformations and
     double-exponential quadrature", 2018.
   - "optcv_expsinh": `OptimalCV` (QuantLib picks Andersen-Lake's angled contour or the
     asymptotic control variate, whichever its heuristic prefers), exp-sinh at 1e-13.
   - "optcv_lobatto": `OptimalCV` with adaptive Gauss-Lobatto at relative tolerance 1e-13.
   - "gatheral_lobatto": the classic engine `AnalyticHestonEngine(model, 1e-13, 10**6)`
     (Heston's P1/P2 integrals, Gatheral's form of the characteristic function, adaptive
     Gauss-Lobatto). Weak for tiny prices: its two integrals cancel.
   - "cos": COSHestonEngine (Fang-Oosterlee COS) with L = 16 and N = 2000 terms: a different
     method altogether, accurate to ~1e-9 x spot where the density is smooth, poor for very
     short maturities and far tails.

   The maturity is exact: QuantLib measures time with a day counter, so a case with T x 365
   an integer uses Actual365Fixed with that many days; any other T uses the nearest whole
   number n >= 1 of days and the Heston time change t = c s with c = T / (n / 365): the
   model (v0, kappa, theta, xi, rho, r, q) on [0, T] has the same terminal law as
   (c v0, c kappa, c theta, c xi, rho, c r, c q) on [0, n / 365] (the Feller ratio and rho
   are unchanged). The scaled parameters carry one rounding error each (relative 1e-16).

2. mpmath at 40 significant digits (`mp_price`, `mp_greeks`): the Carr-Madan / Lord-Kahl
   damped Fourier integral in log-strike,

       C / (F e^{-rT}) = R(alpha) + e^{-alpha k} / pi
           * int_0^inf Re[e^{-i u k} phi(u - i (alpha + 1)) / ((alpha + i u)(alpha + 1 + i u))] du,

   with F = S e^{(r-q)T}, k = log(K / F), phi the characteristic function of log(S_T / F) in
   the "little Heston trap" form (Albrecher, Mayer, Schoutens, Tistaert 2007), R(alpha) = 0
   for alpha > 0 (the integral is the call) and 1 - e^k for alpha < -1 (the integral is the
   put). alpha is the minimiser of the integrand's value at u = 0 (Lord and Kahl 2007,
   "Optimal Fourier inversion in semi-analytical option pricing"; Andersen-Lake) inside the
   strip where E[(S_T/F)^(alpha+1)] is finite, which is found from the moment-explosion time
   of Andersen and Piterbarg ("Moment explosions in stochastic volatility models", Finance
   Stoch. 2007). The out-of-the-money side is integrated (a call when K > F, a put when
   K < F) and parity gives the other, so tiny prices do not come from a cancellation.
   Greeks differentiate under the integral: delta and gamma through k, vega (w.r.t. v0)
   through the factor D(z) of phi = exp(C + D v0). `mp_price(..., alpha=...)` prices on
   another contour: agreement of two contours checks the quadrature and the branch of the
   complex logarithm at once (`mp_price_checked`).

   mpmath is not usable at |rho| = 1 (the characteristic function no longer decays
   exponentially) and slow (1 to 100 s a price, more for tiny T with large xi).

3. `reference(case)`: cross-checks the QuantLib engines (and mpmath where asked or where the
   QuantLib engines disagree) and returns the best value with the spread of the sources.
   At |rho| = 1: the exact 0 beyond the support of S_T (`support_bound`), else the engines
   that still return numbers checked against an extrapolation in rho (`rho_limit`).

4. `fd_greeks(case, price_fn)`: Richardson-extrapolated central differences (three step
   sizes, error O(h^6)) of any reference price for delta, gamma, vega (w.r.t. v0), theta
   (dV/dt = -dV/dT, per year) and rho (w.r.t. the rate).

Published values (QuantLib's test-suite/hestonmodel.cpp, lballabio/QuantLib, read 2026) are
at the end of this module as data, with their citations and how well they agree with the
references; then `KNOWN_CASES`, the known failures of the old hedgejax pricer with right
values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

# ---------------------------------------------------------------------------------------------
# Cases.
# ---------------------------------------------------------------------------------------------


class Case(NamedTuple):
    """One European option under Heston. T in years (exact), rates continuously compounded."""

    kind: str  # "call" or "put"
    spot: float
    v0: float
    kappa: float
    theta: float
    xi: float
    rho: float
    rate: float
    div: float
    strike: float
    T: float

    @property
    def forward(self) -> float:
        return self.spot * math.exp((self.rate - self.div) * self.T)

    @property
    def feller_ratio(self) -> float:
        """2 kappa theta / xi^2: below 1 the Feller condition fails."""
        return 2.0 * self.kappa * self.theta / (self.xi * self.xi)

    @property
    def total_variance(self) -> float:
        """E[int_0^T v dt]."""
        kt = self.kappa * self.T
        frac = -math.expm1(-kt) / kt if kt > 1e-12 else 1.0 - 0.5 * kt
        return self.theta * self.T + (self.v0 - self.theta) * self.T * frac

    def label(self) -> str:
        return (f"{self.kind} S={self.spot:g} K={self.strike:g} T={self.T:.6g} v0={self.v0:g} "
                f"kappa={self.kappa:g} theta={self.theta:g} xi={self.xi:g} rho={self.rho:g} "
                f"r={self.rate:g} q={self.div:g}")


def heston_case(kind: str, spot: float, v0: float, kappa: float, theta: float, xi: float,
                rho: float, strike: float, T: float, rate: float = 0.0,
                div: float = 0.0) -> Case:
    """A `Case` with keyword-friendly argument order."""
    if kind not in ("call", "put"):
        raise ValueError(f"kind must be 'call' or 'put', got {kind!r}")
    return Case(kind, float(spot), float(v0), float(kappa), float(theta), float(xi), float(rho),
                float(rate), float(div), float(strike), float(T))


def parity(case: Case, value: float) -> float:
    """The other option's value from put-call parity: C - P = S e^{-qT} - K e^{-rT}."""
    fwd_pv = case.spot * math.exp(-case.div * case.T) - case.strike * math.exp(-case.rate * case.T)
    return value - fwd_pv if case.kind == "call" else value + fwd_pv


# ---------------------------------------------------------------------------------------------
# QuantLib.
# ---------------------------------------------------------------------------------------------

QL_ENGINES = ("angled_expsinh", "optcv_expsinh", "optcv_lobatto", "gatheral_lobatto", "cos")
# The engines the best QuantLib value is taken from (the median of these three); the other
# two are reported as cross-checks.
QL_PRIMARY = ("angled_expsinh", "optcv_expsinh", "optcv_lobatto")
# QuantLib's Null<Real>(): "no absolute tolerance" for Gauss-Lobatto.
_QL_NULL_REAL = 3.4028234663852886e38
_QL_TODAY = (2, 1, 2024)


def ql_time_change(T: float) -> tuple[int, float]:
    """(whole days n >= 1, time-change factor c) with T = c n / 365 (c = 1 when T x 365 is a
    whole number of days)."""
    if not T > 0:
        raise ValueError(f"T must be > 0, got {T}")
    n = max(1, round(T * 365.0))
    if abs(T * 365.0 - n) <= 1e-12 * n:
        return n, 1.0
    return n, T / (n / 365.0)


def _ql_engine(ql, model, name: str):
    A = ql.AnalyticHestonEngine
    FI = ql.FourierIntegration
    if name == "angled_expsinh":
        return A(model, A.AngledContour, FI.expSinh(1e-13), 1e-14)
    if name == "optcv_expsinh":
        return A(model, A.OptimalCV, FI.expSinh(1e-13), 1e-14)
    if name == "optcv_lobatto":
        return A(model, A.OptimalCV, FI.gaussLobatto(1e-13, _QL_NULL_REAL, 1_000_000), 1e-14)
    if name == "gatheral_lobatto":
        return A(model, 1e-13, 1_000_000)
    if name == "cos":
        return ql.COSHestonEngine(model, 16, 2000)
    raise ValueError(f"unknown QuantLib engine {name!r}; known: {QL_ENGINES}")


def _ql_option(case: Case):
    import QuantLib as ql

    n, c = ql_time_change(case.T)
    today = ql.Date(*_QL_TODAY)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    rts = ql.YieldTermStructureHandle(ql.FlatForward(today, c * case.rate, dc, ql.Continuous))
    qts = ql.YieldTermStructureHandle(ql.FlatForward(today, c * case.div, dc, ql.Continuous))
    process = ql.HestonProcess(rts, qts, ql.QuoteHandle(ql.SimpleQuote(case.spot)), c * case.v0,
                               c * case.kappa, c * case.theta, c * case.xi, case.rho)
    model = ql.HestonModel(process)
    kind = ql.Option.Call if case.kind == "call" else ql.Option.Put
    option = ql.VanillaOption(ql.PlainVanillaPayoff(kind, case.strike),
                              ql.EuropeanExercise(today + n))
    return ql, model, option


def ql_prices(case: Case, engines: tuple[str, ...] = QL_ENGINES) -> dict[str, float]:
    """QuantLib's price of `case` by each engine (nan where an engine raises)."""
    ql, model, option = _ql_option(case)
    out = {}
    for name in engines:
        engine = _ql_engine(ql, model, name)
        option.setPricingEngine(engine)
        try:
            out[name] = float(option.NPV())
        except RuntimeError:
            out[name] = math.nan
    return out


def ql_price(case: Case, engine: str = "angled_expsinh") -> float:
    """QuantLib's price of `case` by one engine (see `QL_ENGINES`)."""
    return ql_prices(case, (engine,))[engine]


# ---------------------------------------------------------------------------------------------
# mpmath: damped Fourier integral at 40 digits.
# ---------------------------------------------------------------------------------------------

MP_DPS = 40


def _mp():
    import mpmath

    return mpmath


def _mp_log_cf(mp, z, T, v0, kappa, theta, xi, rho, with_d=False):
    """log E[exp(i z X)], X = log(S_T / F), little-trap form; z complex (mpc). With `with_d`
    also returns D(z) = d log(phi) / d v0."""
    iz = 1j * z
    beta = kappa - rho * xi * iz
    d = mp.sqrt(beta * beta + xi * xi * (iz + z * z))
    bpd = beta + d
    # beta - d = -xi^2 (i z + z^2) / (beta + d): no cancellation, no division by xi^2.
    bmd_over_xi2 = -(iz + z * z) / bpd
    g = xi * xi * bmd_over_xi2 / bpd
    e = mp.exp(-d * T)
    one_minus_e = -mp.expm1(-d * T)
    D = bmd_over_xi2 * one_minus_e / (1 - g * e)
    log_ratio = mp.log((1 - g * e) / (1 - g))
    C = kappa * theta * (bmd_over_xi2 * T - 2 * log_ratio / (xi * xi))
    if with_d:
        return C + D * v0, D
    return C + D * v0


def explosion_time(p: float, kappa: float, xi: float, rho: float) -> float:
    """Time at which E[S_t^p] becomes infinite under Heston (inf if never). Andersen and
    Piterbarg (2007), Proposition 3.1, with chi = rho xi p - kappa, Delta = chi^2 - xi^2 p(p-1).
    """
    if 0.0 <= p <= 1.0:
        return math.inf
    chi = rho * xi * p - kappa
    delta = chi * chi - xi * xi * p * (p - 1.0)
    if delta >= 0.0:
        if chi < 0.0:
            return math.inf
        sq = math.sqrt(delta)
        if chi - sq <= 0.0:
            return 1.0 / chi if chi > 0 else math.inf
        return math.log((chi + sq) / (chi - sq)) / sq
    gamma = math.sqrt(-delta)
    if chi == 0.0:
        return math.pi / gamma
    return 2.0 / gamma * ((math.pi if chi < 0.0 else 0.0) + math.atan(gamma / chi))


def moment_bounds(case: Case, p_cap: float = 1e5) -> tuple[float, float]:
    """(p_minus, p_plus): E[(S_T/F)^p] is finite for p_minus < p < p_plus (capped at
    +-p_cap). Bisection on the explosion time."""
    T, kappa, xi, rho = case.T, case.kappa, case.xi, case.rho

    def finite(p):
        return explosion_time(p, kappa, xi, rho) > T * (1 + 1e-12)

    def edge(inside: float, direction: float) -> float:
        outside = inside + direction
        while finite(outside):
            if abs(outside) >= p_cap:
                return math.copysign(p_cap, direction)
            inside, outside = outside, inside + 2.0 * (outside - inside)
        for _ in range(200):
            mid = 0.5 * (inside + outside)
            if mid in (inside, outside):
                break
            if finite(mid):
                inside = mid
            else:
                outside = mid
        return inside

    return edge(0.0, -1.0), edge(1.0, 1.0)


def _golden_min(f: Callable[[float], float], lo: float, hi: float, iters: int = 80) -> float:
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return 0.5 * (a + b)


def optimal_alpha(case: Case, otm_call: bool) -> float:
    """Damping alpha minimising log M(alpha + 1) - alpha k - log(alpha (alpha + 1)), the log of
    the damped integrand at u = 0 (M the moment generating function of log(S_T / F), k =
    log(K / F)): alpha > 0 for the call integral, alpha < -1 for the put integral."""
    mp = _mp()
    k = math.log(case.strike / case.forward)
    p_lo, p_hi = moment_bounds(case)
    params = (case.T, case.v0, case.kappa, case.theta, case.xi, case.rho)

    def objective(alpha: float) -> float:
        with mp.workdps(30):
            log_m = mp.re(_mp_log_cf(mp, mp.mpc(0, -(alpha + 1.0)), *params))
            val = float(log_m) - alpha * k - math.log(alpha * (alpha + 1.0))
        return val if math.isfinite(val) else math.inf

    if otm_call:
        lo, hi = 1e-6, p_hi - 1.0
    else:
        lo, hi = p_lo - 1.0, -1.0 - 1e-6
    # stay clear of the explosion boundary, where M is infinite
    span = hi - lo
    if otm_call:
        hi = lo + span * (1 - 1e-6)
    else:
        lo = hi - span * (1 - 1e-6)
    return _golden_min(objective, lo, hi)


@functools.cache
def _gl_nodes(n: int, dps: int):
    """Gauss-Legendre nodes and weights on [0, 1] at `dps` digits (mpf tuples)."""
    mp = _mp()
    with mp.workdps(dps + 10):
        nodes, weights = [], []
        for i in range(1, n + 1):
            x = mp.cos(mp.pi * (i - mp.mpf(1) / 4) / (n + mp.mpf(1) / 2))
            for _ in range(100):
                p0, p1 = mp.mpf(1), x
                for j in range(2, n + 1):
                    p0, p1 = p1, ((2 * j - 1) * x * p1 - (j - 1) * p0) / j
                dp = n * (x * p1 - p0) / (x * x - 1)
                dx = p1 / dp
                x -= dx
                if abs(dx) < mp.mpf(10) ** (-(dps + 8)):
                    break
            p0, p1 = mp.mpf(1), x
            for j in range(2, n + 1):
                p0, p1 = p1, ((2 * j - 1) * x * p1 - (j - 1) * p0) / j
            dp = n * (x * p1 - p0) / (x * x - 1)
            nodes.append((1 - x) / 2)
            weights.append(1 / ((1 - x * x) * dp * dp))
        return tuple(nodes), tuple(weights)


# Nodes per sub-interval. Sub-intervals are at most one local "wavelength" of the integrand
# long (2 pi / |d log f / du|: its phase turns, or its modulus falls by e^{-2 pi}, at most
# once), where the 24-point rule's error is below pi^48 / 48! ~ 1e-37 of the interval's size.
_GL_NODES = 24
# The integral stops where the integrand is below this fraction of its value at u = 0.
_MP_TAIL = 1e-32


def _mp_integrals(case: Case, alpha: float, greeks: bool):
    """([I, I_k, I_kk, I_v0], k) where the undiscounted, forward-normalised OTM-side value is
    R(alpha) + I and I_k, I_kk, I_v0 are the derivatives of I w.r.t. k = log(K/F) and v0.

    Composite Gauss-Legendre (`_GL_NODES` points per sub-interval). The first sub-interval is
    half the width of the integrand's peak at u = 0 (from its curvature there); each next one
    is at most 1.5 times the previous and at most one local wavelength (see `_GL_NODES`).
    The integral ends where |integrand| x (1 + |w|^2) < `_MP_TAIL` x its value at 0 and is
    falling."""
    mp = _mp()
    T, v0, kappa, theta, xi, rho = (mp.mpf(x) for x in (case.T, case.v0, case.kappa,
                                                          case.theta, case.xi, case.rho))
    k = mp.log(mp.mpf(case.strike)) - mp.log(mp.mpf(case.spot)) - (
        mp.mpf(case.rate) - mp.mpf(case.div)) * T
    a = mp.mpf(alpha)
    shift = mp.mpc(0, -(a + 1))
    params = (T, v0, kappa, theta, xi, rho)

    def log_val(u):
        w = a + 1j * u
        return _mp_log_cf(mp, u + shift, *params) - w * k - mp.log(w * (w + 1))

    def values(u):
        """Integrand of I (and of its derivatives, when `greeks`) at u."""
        z = u + shift
        w = a + 1j * u
        if greeks:
            lcf, D = _mp_log_cf(mp, z, *params, with_d=True)
        else:
            lcf = _mp_log_cf(mp, z, *params)
        val = mp.exp(lcf - w * k) / (w * (w + 1))
        if not greeks:
            return (mp.re(val),)
        return (mp.re(val), mp.re(-w * val), mp.re(w * w * val), mp.re(D * val))

    eps = mp.mpf(10) ** (-12)
    log0 = mp.re(log_val(mp.mpf(0)))
    curvature = abs(2 * (mp.re(log_val(eps)) - log0) / (eps * eps))
    width = 1 / mp.sqrt(curvature) if curvature > 0 else mp.mpf(1) / math.sqrt(
        max(case.total_variance, 1e-300))
    log_tail = log0 + mp.log(_MP_TAIL)
    nodes, weights = _gl_nodes(_GL_NODES, mp.mp.dps)
    totals = [mp.mpf(0)] * (4 if greeks else 1)
    lo = mp.mpf(0)
    length = width / 2
    for _ in range(1_000_000):
        hi = lo + length
        for x, wt in zip(nodes, weights, strict=True):
            vals = values(lo + length * x)
            for i, v in enumerate(vals):
                totals[i] += wt * length * v
        lo = hi
        here = log_val(lo)
        slope = (log_val(lo + eps * (1 + lo)) - here) / (eps * (1 + lo))
        w = a + 1j * lo
        if mp.re(here) + mp.log(1 + abs(w) ** 2) < log_tail and mp.re(slope) < 0:
            break
        length = min(1.5 * length, 2 * mp.pi / abs(slope))
    else:
        raise RuntimeError(f"mpmath integral did not converge for {case.label()}")
    return [t / mp.pi for t in totals], k


def _mp_value(case: Case, alpha: float | None, greeks: bool):
    if abs(case.rho) >= 1.0:
        raise ValueError("mpmath references need |rho| < 1 (at |rho| = 1 the characteristic "
                         "function decays only like a power of u); use reference()")
    mp = _mp()
    with mp.workdps(MP_DPS):
        k_float = math.log(case.strike / case.forward)
        otm_call = k_float >= 0.0
        if alpha is None:
            alpha = optimal_alpha(case, otm_call)
        otm_call = alpha > 0
        integrals, k = _mp_integrals(case, alpha, greeks)
        spot = mp.mpf(case.spot)
        T = mp.mpf(case.T)
        disc_q = mp.exp(-mp.mpf(case.div) * T)
        fwd_pv = spot * disc_q  # F e^{-rT}
        # forward-normalised call value and derivatives in k
        ek = mp.exp(k)
        if otm_call:
            c, c_k, c_kk = integrals[0], None, None
            if greeks:
                c_k, c_kk = integrals[1], integrals[2]
        else:
            c = 1 - ek + integrals[0]
            if greeks:
                c_k, c_kk = -ek + integrals[1], -ek + integrals[2]
        call = fwd_pv * c
        strike_pv = mp.mpf(case.strike) * mp.exp(-mp.mpf(case.rate) * T)
        if case.kind == "call":
            value = call
        else:
            value = (fwd_pv * integrals[0]) if not otm_call else call - fwd_pv + strike_pv
        out = {"price": value, "alpha": alpha}
        if greeks:
            delta_call = disc_q * (c - c_k)
            gamma = disc_q * (c_kk - c_k) / spot
            vega = fwd_pv * integrals[3]
            out.update(delta=delta_call if case.kind == "call" else delta_call - disc_q,
                       gamma=gamma, vega=vega)
        return out


def mp_price(case: Case, alpha: float | None = None) -> float:
    """mpmath (40 digits) price of `case`; `alpha` overrides the optimal damping (alpha > 0
    integrates the call, alpha < -1 the put)."""
    return float(_mp_value(case, alpha, greeks=False)["price"])


def mp_greeks(case: Case, alpha: float | None = None) -> dict[str, float]:
    """mpmath price, delta, gamma and vega (w.r.t. v0) by differentiation under the integral."""
    out = _mp_value(case, alpha, greeks=True)
    return {key: float(val) for key, val in out.items()}


def mp_price_checked(case: Case) -> tuple[float, float]:
    """(price, |difference|) from the optimal contour and a second one, alpha moved 10% of the
    way towards the inner end of its interval (0 or -1). A different contour changes the
    integrand everywhere, so agreement checks the quadrature, the truncation and the branch
    of the complex logarithm. (Far from the optimum the integrand is much larger than the
    price and 40 digits no longer suffice, so the second contour stays near it.)"""
    mp = _mp()
    with mp.workdps(MP_DPS):
        first = _mp_value(case, None, greeks=False)
        alpha = first["alpha"]
        other = 0.9 * alpha if alpha > 0 else -1.0 + 0.9 * (alpha + 1.0)
        second = _mp_value(case, other, greeks=False)
    return float(first["price"]), abs(float(first["price"] - second["price"]))


# ---------------------------------------------------------------------------------------------
# Best reference.
# ---------------------------------------------------------------------------------------------


class Reference(NamedTuple):
    """A reference price: `value`, the `source` it came from, `spread` (max |difference|
    between the agreeing primary sources) and every source's value."""

    value: float
    source: str
    spread: float
    values: dict[str, float]


def agreement_tolerance(case: Case, value: float) -> float:
    """How close two references must be to count as agreeing: a tenth of the hedgejax
    targets (1e-9 x spot absolute, and 1e-7 relative for values above 1e-6 x spot)."""
    tol = 1e-9 * case.spot
    if abs(value) > 1e-6 * case.spot:
        tol = min(tol, 1e-7 * abs(value))
    return max(tol, 1e-300)


def support_bound(case: Case) -> tuple[float, float]:
    """(lo, hi) bounds of X = log(S_T / F) that hold exactly when |rho| = 1 (else (-inf, inf)).

    With rho = -1, int sqrt(v) dW1 = -(v_T - v0 - kappa theta T + kappa int v) / xi, so
    X = (v0 + kappa theta T) / xi - v_T / xi - (1/2 + kappa / xi) int v <= (v0 + kappa theta T)
    / xi. With rho = +1, X = (v_T - v0 - kappa theta T) / xi + (kappa / xi - 1/2) int v >=
    -(v0 + kappa theta T) / xi when 2 kappa >= xi."""
    bound = (case.v0 + case.kappa * case.theta * case.T) / case.xi
    if case.rho == -1.0:
        return -math.inf, bound
    if case.rho == 1.0 and 2.0 * case.kappa >= case.xi:
        return -bound, math.inf
    return -math.inf, math.inf


def zero_by_support(case: Case) -> bool:
    """Whether the option is worth exactly 0 because its strike lies beyond the support of
    S_T (|rho| = 1 only; `support_bound`)."""
    lo, hi = support_bound(case)
    k = math.log(case.strike / case.forward)
    return (case.kind == "call" and k >= hi) or (case.kind == "put" and k <= lo)


# Engines that may confirm the median of the primary ones.
QL_CHECKERS = QL_PRIMARY + ("gatheral_lobatto",)


def _ql_median(case: Case) -> tuple[float, float, dict[str, float]]:
    """(median of the finite primary engines, spread, all values). The spread is the largest
    difference between the median and the engines of `QL_CHECKERS` that agree with it within
    `agreement_tolerance`; inf unless at least two engines (the median's own and another)
    agree."""
    values = ql_prices(case)
    finite = sorted(v for v in (values[n] for n in QL_PRIMARY) if math.isfinite(v))
    if not finite:
        return math.nan, math.inf, values
    median = finite[len(finite) // 2]
    tol = agreement_tolerance(case, median)
    diffs = sorted(abs(values[n] - median) for n in QL_CHECKERS if math.isfinite(values[n]))
    agreeing = [d for d in diffs if d <= tol]
    return median, (max(agreeing) if len(agreeing) >= 2 else math.inf), values


# 1 - |rho| for the extrapolation to |rho| = 1 (quadratic through three points).
RHO_LIMIT_EPS = (1e-4, 2e-4, 4e-4)


def rho_limit(case: Case, eps: tuple[float, float, float] = RHO_LIMIT_EPS) -> float:
    """Price at |rho| = 1 extrapolated from |rho| = 1 - e for e in `eps` (h, 2h, 4h), with a
    quadratic in e through the three QuantLib medians: (8 P(h) - 6 P(2h) + P(4h)) / 3. The
    price is smooth in rho where the density of log S_T is smooth (away from the support
    bound of `support_bound`)."""
    h = eps
    p = [_ql_median(case._replace(rho=math.copysign(1.0 - e, case.rho)))[0] for e in h]
    return (8.0 * p[0] - 6.0 * p[1] + p[2]) / 3.0


def reference(case: Case, use_mpmath: bool | str = "auto") -> Reference:
    """Best reference price of `case`.

    |rho| < 1: the median of the finite QuantLib primary engines (`QL_PRIMARY`) is the value
    when at least one other engine of `QL_CHECKERS` agrees with it within
    `agreement_tolerance` (one outlier among them is tolerated and left out of the spread).
    With use_mpmath="auto" mpmath is consulted when no engine confirms the median, with True
    always; mpmath's value then wins (its spread includes the difference to a second
    contour). With use_mpmath=False an unconfirmed median comes with spread inf.

    |rho| = 1: 0 exactly when the strike is beyond the support of S_T (`zero_by_support`,
    source "support"); otherwise the median of the finite primary engines at |rho| = 1
    (AngledContour and OptimalCV return numbers there, Gauss-Lobatto nan), checked against
    `rho_limit`, whose difference is the spread; when no engine is finite, `rho_limit` itself
    (source "rho_limit", spread = its difference to the extrapolation from 2h, 4h, 8h).
    mpmath is not used at |rho| = 1: the characteristic function then decays only like a
    power of u (about u^(-2 kappa theta / xi^2)), so the integral cannot be truncated.

    `spread` is the largest difference between the value and the sources that agree with it.
    """
    if abs(case.rho) == 1.0:
        if zero_by_support(case):
            return Reference(0.0, "support", 0.0, {})
        value, spread, values = _ql_median(case)
        limit = rho_limit(case)
        values["rho_limit"] = limit
        if math.isfinite(value):
            gap = abs(value - limit)
            return Reference(value, "quantlib", max(spread, gap) if math.isfinite(spread)
                             else gap, values)
        coarse = rho_limit(case, tuple(2 * e for e in RHO_LIMIT_EPS))
        values["rho_limit_coarse"] = coarse
        return Reference(limit, "rho_limit", abs(limit - coarse), values)
    value, spread, values = _ql_median(case)
    source = "quantlib"
    finite = [values[n] for n in QL_CHECKERS if math.isfinite(values[n])]
    need_mp = use_mpmath is True or (use_mpmath == "auto" and not math.isfinite(spread))
    if need_mp:
        mp_value, contour_diff = mp_price_checked(case)
        values["mpmath"] = mp_value
        values["mpmath_contour_diff"] = contour_diff
        value, source = mp_value, "mpmath"
        agreeing = [v for v in finite if abs(v - value) <= agreement_tolerance(case, value)]
        spread = max([contour_diff] + [abs(v - value) for v in agreeing])
    return Reference(value, source, spread, values)


# ---------------------------------------------------------------------------------------------
# Greeks by Richardson-extrapolated finite differences.
# ---------------------------------------------------------------------------------------------


def _richardson(d: Callable[[float], float], h: float) -> float:
    """Three-level Richardson extrapolation of a central difference d(h) with error
    c2 h^2 + c4 h^4 + ...: O(h^6)."""
    d1, d2, d4 = d(h), d(h / 2), d(h / 4)
    r1 = (4 * d2 - d1) / 3
    r2 = (4 * d4 - d2) / 3
    return (16 * r2 - r1) / 15


def fd_greeks(case: Case, price_fn: Callable[[Case], float] | None = None,
              names: tuple[str, ...] = ("delta", "gamma", "vega", "theta", "rho")
              ) -> dict[str, float]:
    """Finite-difference Greeks of `price_fn` (default: QuantLib "angled_expsinh") at `case`:
    delta, gamma (spot), vega (d/d v0), theta (dV/dt = -dV/dT) and rho (d/d rate).

    Steps scale with the option: spot step h_S = 0.05 x S x sd (sd = sqrt of the expected
    total variance; capped at 0.02 S), v0 step 0.05 v0 (the price has a square-root branch
    point at v0 = 0 for short maturities), T step 0.05 T capped at 0.01 years (near expiry
    the price is not smooth on scales of T), rate step 0.01. Each is a central difference
    extrapolated over h, h/2, h/4 (error O(h^6)); price noise of 1e-13 relative gives about
    1e-11 relative error in delta, vega, theta, rho and 1e-10 in gamma.
    """
    fn = price_fn or ql_price
    base = fn(case)
    sd = math.sqrt(max(case.total_variance, 1e-12))
    out: dict[str, float] = {"price": base}
    h_s = case.spot * min(0.02, 0.05 * sd)
    if "delta" in names:
        out["delta"] = _richardson(lambda h: (fn(case._replace(spot=case.spot + h))
                                              - fn(case._replace(spot=case.spot - h))) / (2 * h),
                                   h_s)
    if "gamma" in names:
        out["gamma"] = _richardson(lambda h: (fn(case._replace(spot=case.spot + h)) - 2 * base
                                              + fn(case._replace(spot=case.spot - h))) / (h * h),
                                   h_s)
    if "vega" in names:
        h_v = 0.05 * case.v0
        out["vega"] = _richardson(lambda h: (fn(case._replace(v0=case.v0 + h))
                                             - fn(case._replace(v0=case.v0 - h))) / (2 * h), h_v)
    if "theta" in names:
        h_t = min(0.05 * case.T, 0.01)
        out["theta"] = -_richardson(lambda h: (fn(case._replace(T=case.T + h))
                                               - fn(case._replace(T=case.T - h))) / (2 * h), h_t)
    if "rho" in names:
        out["rho"] = _richardson(lambda h: (fn(case._replace(rate=case.rate + h))
                                            - fn(case._replace(rate=case.rate - h))) / (2 * h),
                                 0.01)
    return out


# ---------------------------------------------------------------------------------------------
# Black-Scholes (for implied-vol data and sanity checks).
# ---------------------------------------------------------------------------------------------


def black_price(kind: str, forward: float, strike: float, stdev: float,
                discount: float = 1.0) -> float:
    """Black (1976) price on a forward with total standard deviation `stdev`."""
    if stdev <= 0:
        return discount * max((forward - strike) if kind == "call" else (strike - forward), 0.0)
    d1 = math.log(forward / strike) / stdev + 0.5 * stdev
    d2 = d1 - stdev
    def cdf(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2.0))

    if kind == "call":
        return discount * (forward * cdf(d1) - strike * cdf(d2))
    return discount * (strike * cdf(-d2) - forward * cdf(-d1))


# ---------------------------------------------------------------------------------------------
# Published values. All from QuantLib's test suite, test-suite/hestonmodel.cpp
# (https://github.com/lballabio/QuantLib, read at commit 018df35316d5c8cb0ea5bba15cfbb37a91836c20).
# Maturities there are QuantLib dates; T below is the year fraction they give (Actual365Fixed
# unless stated), which is exact for every entry here.
# ---------------------------------------------------------------------------------------------

# testAlanLewisReferencePrices: Alan Lewis's reference prices (posted on the Wilmott forum,
# thread 90957), 50 digits. S = 100, r = 0.01, q = 0.02, v0 = 0.04, kappa = 4, theta = 0.25,
# xi = 1, rho = -0.5, T = 1 (5 Jul 2002 - 5 Jul 2003, Actual365Fixed: 365 days). QuantLib
# checks its engines to 1e-12 relative.
LEWIS_PARAMS = dict(spot=100.0, v0=0.04, kappa=4.0, theta=0.25, xi=1.0, rho=-0.5, T=1.0,
                    rate=0.01, div=0.02)
LEWIS_PRICES = {  # strike: (put, call)
    80.0: (7.958878113256768285213263077598987193482161301733,
           26.774758743998854221382195325726949201687074848341),
    90.0: (12.017966707346304987709573290236471654992071308187,
           20.933349000596710388139445766564068085476194042256),
    100.0: (17.055270961270109413522653999411000974895436309183,
            16.070154917028834278213466703938231827658768230714),
    110.0: (23.017825898442800538908781834822560777763225722188,
            12.132211516709844867860534767549426052805766831181),
    120.0: (29.811026202682471843340682293165857439167301370697,
            9.024913483457835636553375454092357136489051667150),
}

# testExponentialFitting4StrikesAndMaturities: out-of-the-money prices from a boost
# multiprecision implementation of the AnalyticHestonEngine (K. Spanderen,
# github.com/klausspanderen/HestonExponentialFitting); QuantLib checks to 1e-12 absolute.
# S = 1, r = 0.0507, q = 0.0469, v0 = 0.04, kappa = 2.5, theta = 0.06, xi = 0.75, rho = -0.6;
# maturities 1 day, 1 month, 1 year, 10 years from 13 May 2020 (Actual365Fixed: 1, 31, 365,
# 3652 days); strike = F exp(-m sqrt(theta T)) for the moneyness list below (QuantLib's list,
# which has 2.5 and 1 where -2.5 and -1 were presumably meant: the values follow the list).
# The value is the out-of-the-money option's: the call when F < K, else the put.
EXPFIT_PARAMS = dict(spot=1.0, v0=0.04, kappa=2.5, theta=0.06, xi=0.75, rho=-0.6, rate=0.0507,
                     div=0.0469)
EXPFIT_DAYS = (1, 31, 365, 3652)
EXPFIT_MONEYNESS = (-20.0, -10.0, -5.0, 2.5, 1.0, 0.0, 1.0, 2.5, 5.0, 10.0, 20.0)
EXPFIT_VALUES = (
    1.1631865252540813e-58, 1.06426822273258466e-49, 6.92896489110422086e-16,
    8.19515526286263236e-06, 0.000625608178476390504, 0.00417261379371945684,
    0.000625608178476390504, 8.19515526286263236e-06, 1.92308901296741414e-10,
    1.57327901822368115e-23, 5.7830515043285098e-58,
    3.56081886910098813e-48, 2.9489071194212509e-23, 1.54181757781090727e-11,
    0.000367960011879847279, 0.00493886106106039818, 0.0227152343265593776,
    0.00493886106106039818, 0.000367960011879847279, 3.06653474407784574e-06,
    8.86665241279348934e-11, 1.51206812371708868e-20,
    4.18506719865401643e-29, 2.46637786897559908e-15, 1.75338784910563671e-08,
    0.00284789176080218294, 0.0199133097064688458, 0.0776848755698912041,
    0.0199133097064688458, 0.00284789176080218294, 0.00012462190796343504,
    2.59755319566692257e-07, 1.13853114743124721e-12,
    4.27612073892114211e-39, 1.08387452075906664e-25, 4.15179522944463802e-11,
    0.00134157732880653131, 0.029018582813884912, 0.176405213088554197,
    0.029018582813884912, 0.00134157732880653131, 5.43674074281991917e-06,
    6.51443921040230507e-11, 9.25756999394709285e-21,
)


def expfit_cases() -> list[tuple[Case, float]]:
    """(out-of-the-money case, published value) for the exponential-fitting table."""
    p = EXPFIT_PARAMS
    out = []
    idx = 0
    for days in EXPFIT_DAYS:
        T = days / 365.0
        fwd = p["spot"] * math.exp((p["rate"] - p["div"]) * T)
        for m in EXPFIT_MONEYNESS:
            strike = math.exp(-m * math.sqrt(p["theta"] * T)) * fwd
            kind = "call" if fwd < strike else "put"
            out.append((heston_case(kind, strike=strike, T=T, **p), EXPFIT_VALUES[idx]))
            idx += 1
    return out


# testAsymptoticControlVariate: "extreme Heston model values" (Feller ratio 2 kappa theta /
# xi^2 = 5e-4). S = 1, r = q = 0, v0 = 0.0225, kappa = 0.1, theta = 0.01, xi = 2, rho = 0.5,
# T = 2 (4 Aug 2020 - 4 Aug 2022, Actual365Fixed: 730 days); strike = exp(-m sqrt(theta T)),
# a call when the strike is above 1, else a put. QuantLib checks its engines to 5e-8.
ASYMPTOTIC_PARAMS = dict(spot=1.0, v0=0.0225, kappa=0.1, theta=0.01, xi=2.0, rho=0.5, T=2.0,
                         rate=0.0, div=0.0)
ASYMPTOTIC_MONEYNESS = (-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0)
ASYMPTOTIC_VALUES = (0.0074676425640918, 0.008680823863233695, 0.010479611906112223,
                     0.023590088942038945, 0.0019575784806211706, 0.0005490310253748906,
                     0.0001657118753134695)


def asymptotic_cases() -> list[tuple[Case, float]]:
    """(case, published value) for the asymptotic-control-variate table."""
    p = ASYMPTOTIC_PARAMS
    out = []
    for m, value in zip(ASYMPTOTIC_MONEYNESS, ASYMPTOTIC_VALUES, strict=True):
        strike = math.exp(-m * math.sqrt(p["theta"] * p["T"]))
        kind = "call" if strike > 1.0 else "put"
        out.append((heston_case(kind, strike=strike, **p), value))
    return out


# testCosHestonEngine: COS prices, checked there to 1e-10. S = 100, r = 0.15, q = 0.07,
# v0 = 0.1, kappa = 4, theta = 0.22, xi = 1.8, rho = -0.75, T = 1 (7 Feb 2017 + 1 year,
# Actual365Fixed: 365 days).
COS_PARAMS = dict(spot=100.0, v0=0.1, kappa=4.0, theta=0.22, xi=1.8, rho=-0.75, T=1.0,
                  rate=0.15, div=0.07)
COS_PRICES = (("call", 120.0, 9.364410588426075), ("call", 250.0, 0.01036797658132471),
              ("put", 80.0, 5.319092971836708), ("put", 10.0, 0.01032681906278383))

# testAllIntegrationMethods: put K = 100, S = 100, r = 0.05, q = 0.075, v0 = 0.1, kappa = 4,
# theta = 0.05, xi = 0.4, rho = -0.75, T = 1 (365 days): 10.147041515497 (checked to 1e-8).
ALL_INTEGRATION_CASE = (heston_case("put", 100.0, 0.1, 4.0, 0.05, 0.4, -0.75, 100.0, 1.0,
                                    rate=0.05, div=0.075), 10.147041515497)

# testCosHestonEngineTruncation: call K = 200, S = 100, T = 1 day, r = q = 0, v0 = 0.007,
# kappa = 0.8, theta = 0.007, xi = 0.1, rho = -0.2: 0 to 1e-7.
COS_TRUNCATION_CASE = (heston_case("call", 100.0, 0.007, 0.8, 0.007, 0.1, -0.2, 200.0,
                                   1.0 / 365.0), 0.0)

# testKahlJaeckelCase (Kahl and Jaeckel, "Not-so-complex logarithms in the Heston model",
# Wilmott magazine, Sept 2005): call K = 200, S = 100, r = q = 0, v0 = theta = 0.16, kappa = 1,
# xi = 2, rho = -0.8, 30 Mar 2007 - 30 Mar 2017 under ActualActual(ISDA): T = 10 exactly.
# Published 4.95212 (QuantLib checks to 2e-5).
KAHL_JAECKEL_CASE = (heston_case("call", 100.0, 0.16, 1.0, 0.16, 2.0, -0.8, 200.0, 10.0),
                     4.95212)

# testAnalyticVsCached: call K = 1.05, S = 1, r = 0.0225, q = 0.02, v0 = 0.1, kappa = 3.16,
# theta = 0.09, xi = 0.4, rho = -0.2, 27 Dec 2004 - 28 Mar 2005 under ActualActual(ISDA):
# T = 5/366 + 86/365. Cached 0.0404774515 (QuantLib checks to 1e-8).
ANALYTIC_CACHED_CASE = (heston_case("call", 1.0, 0.1, 3.16, 0.09, 0.4, -0.2, 1.05,
                                    5.0 / 366.0 + 86.0 / 365.0, rate=0.0225, div=0.02),
                        0.0404774515)

# testAnalyticVsCached, second part: reference values from the Wilmott forum ("Heston or VG
# price check"), 7 digits: calls at T = 0.7 on a unit forward (S = e^{-0.7 (0.05 - 0.02)}),
# r = 0.05, q = 0.02, v0 = 0.09, kappa = 1.2, theta = 0.08, xi = 1.8, rho = -0.45.
WILMOTT_PARAMS = dict(spot=math.exp(-0.7 * 0.05) / math.exp(-0.7 * 0.02), v0=0.09, kappa=1.2,
                      theta=0.08, xi=1.8, rho=-0.45, T=0.7, rate=0.05, div=0.02)
WILMOTT_PRICES = ((0.9, 0.1330371), (1.0, 0.0641016), (1.1, 0.0270645))

# Data checks of the published tables against this module's references (2026-11-30):
# - Lewis: every QuantLib primary engine and mpmath agree to 7e-16 relative.
# - Exponential fitting: the references agree to 6e-16 x spot absolute and 3e-11 relative
#   above 1e-6 x spot, but three of the 1-day values are not what 40-digit mpmath finds
#   (two contours and 40 or 60 digits agree to all shown digits; QuantLib only checks this
#   table to 1e-12 absolute). Moneyness -20 (call): published 1.16e-58, mpmath 2.62e-145 -
#   and the Chernoff bound e^{-alpha k} E[(S_T/F)^(alpha+1)] / (e (alpha+1)) at alpha = 2000,
#   with the moment from QuantLib's own lnChF, is 1e-141, so the published value is too big.
#   Moneyness 20 (put): published 5.783e-58, mpmath 5.553e-58 (4% apart). Moneyness -10:
#   published 1.0642682227e-49, mpmath 1.0642682181e-49 (4e-9 relative). `EXPFIT_MPMATH`
#   has the mpmath values, by index into EXPFIT_VALUES.
# - Asymptotic control variate: references agree to 1.8e-12 x spot (4.6e-9 relative).
# - COS engine table: 5e-15 x spot (5e-11 relative); all-integration: 2.4e-15 x spot.
# - Kahl-Jaeckel: published 4.95212 (6 digits); the references give 4.95211472087977 (5.3e-6
#   apart; QuantLib checks its engines to 2e-5).
# - testAnalyticVsCached: 8.6e-12 absolute on spot 1 (2.1e-10 relative; 10 digits published).
# - Wilmott forum values: 5.1e-7 absolute on spot 1 (1.9e-5 relative): good to about 1e-6
#   only (QuantLib checks them to 1e-6 after interpolating in T).
# - QuantLib's Forde et al. table (testExpansionOnFordeReference: implied vols for v0 =
#   theta = 0.04, kappa = 1.15, xi = 0.2, rho = -0.4) is not included: priced through
#   Black's formula those vols differ from every engine here by up to 34% of the price, so
#   they are not exact Heston implied vols (QuantLib uses them only to test expansions, to
#   several percent).
EXPFIT_MPMATH = {0: 2.6229465674681437e-145, 1: 1.0642682181038346e-49,
                 10: 5.553204982741351e-58}


# ---------------------------------------------------------------------------------------------
# Known failing cases of the old hedgejax pricer, with right values. Values by
# `mp_price_checked` (40 digits; the second contour agrees to better than 1e-40 x the value
# in every case) and equal to the QuantLib primary engines within their noise (about 1e-16 x
# spot). Where the rate and dividend were not stated, r = 0.02, q = 0.01 reproduce its
# right values (r = q = 0 gives 0.0124382316379 for "rho99" and 0.0270861123857 for "v0_1e-4").
# ---------------------------------------------------------------------------------------------

KNOWN_CASES = {
    "xi2_K200_T0.25": (heston_case("call", 100.0, 0.04, 1.0, 0.04, 2.0, -0.5, 200.0, 0.25,
                                   rate=0.02, div=0.01), 9.6538078268432344e-04),
    "feller_K200_T1": (heston_case("call", 100.0, 0.01, 0.3, 0.02, 1.5, -0.8, 200.0, 1.0,
                                   rate=0.02, div=0.01), 8.5730291247622522e-04),
    "rho99_K200_T0.25": (heston_case("call", 100.0, 0.04, 1.5, 0.04, 0.8, 0.99, 200.0, 0.25,
                                     rate=0.02, div=0.01), 1.2669778568906812e-02),
    "v0_1e-4_put75_T1": (heston_case("put", 100.0, 1e-4, 0.2, 0.01, 1.0, -0.3, 75.0, 1.0,
                                     rate=0.02, div=0.01), 2.5524718186466063e-02),
    # rho = -1: S_T <= F exp((v0 + kappa theta T) / xi) = F e^0.025, so the call at 200 is
    # worth exactly 0 (`support_bound`); QuantLib's engines return nan or -1e-16 here.
    "rho-1_K200_T0.25": (heston_case("call", 100.0, 0.04, 1.0, 0.04, 2.0, -1.0, 200.0, 0.25,
                                     rate=0.02, div=0.01), 0.0),
    "xi5_spot1_K2_T91d": (heston_case("call", 1.0, 0.07, 1.0, 0.04, 5.0, -0.75, 2.0,
                                      91.0 / 365.0, rate=0.05, div=0.03),
                          2.5092993961675586e-05),
    # 7-day calls far out of the money: QuantLib's engines are at their noise floor (1e-15)
    # for the last two, mpmath resolves them.
    "7d_K130": (heston_case("call", 100.0, 0.1, 1.0, 0.1, 1.0, -0.5, 130.0, 7.0 / 365.0),
                3.1418345364337628e-11),
    "7d_K140": (heston_case("call", 100.0, 0.1, 1.0, 0.1, 1.0, -0.5, 140.0, 7.0 / 365.0),
                4.0958750565978055e-16),
    "7d_K150": (heston_case("call", 100.0, 0.1, 1.0, 0.1, 1.0, -0.5, 150.0, 7.0 / 365.0),
                5.3205393291333811e-21),
}
