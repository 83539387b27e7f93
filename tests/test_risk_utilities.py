"""Quadratic CVaR, utilities and the optimised certainty equivalent (hedgejax/risk.py), each
against a direct computation in the test: sorted-tail ES, the closed-form entropic risk of a
normal sample, a grid search over w, NumPy transcriptions of the formulas, finite
differences for the gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hedgejax import risk
from hedgejax._hedge import HedgeResult
from hedgejax.risk import ExponentialUtility, IsoelasticUtility, ShortfallUtility, oce


def _normal(n, mu=0.3, sigma=1.5, seed=0):
    return mu + sigma * np.random.default_rng(seed).standard_normal(n)


def _es_numpy(x, alpha):
    """Mean of the worst (1 - alpha) n outcomes as a loss, the boundary outcome counted
    fractionally (Acerbi & Tasche 2002); the worst outcome when (1 - alpha) n < 1."""
    losses = np.sort(-np.asarray(x, dtype=float))[::-1]
    k = (1 - alpha) * len(losses)
    if k < 1:
        return losses[0]
    whole = int(np.floor(k))
    tail = losses[:whole].sum() + (k - whole) * (losses[whole] if whole < len(losses) else 0)
    return tail / k


# ------------------------------------------------------------------ expected shortfall as OCE

@pytest.mark.parametrize("n,alpha", [(1000, 0.95), (333, 0.99), (10, 0.5), (7, 0.9)])
def test_shortfall_oce_is_sorted_tail_es(x64, n, alpha):
    x = _normal(n, seed=n)
    measure = oce(ShortfallUtility(alpha))
    es = _es_numpy(x, alpha)
    assert float(measure.infimum(jnp.asarray(x))) == pytest.approx(es, rel=1e-12, abs=1e-12)
    w = measure.argmin(jnp.asarray(x))
    # at the argmin the Rockafellar-Uryasev bracket is the ES; the argmin is VaR, a loss
    at_w = float(w) + np.mean(np.maximum(-x - float(w), 0.0)) / (1 - alpha)
    assert at_w == pytest.approx(es, rel=1e-12, abs=1e-12)
    assert float(oce(ShortfallUtility(alpha), w)(jnp.asarray(x))) == pytest.approx(es, rel=1e-12)
    assert float(w) in set(-x)
    # no w does better (grid over the sample's losses and between them)
    grid = np.linspace(-x.max() - 1, -x.min() + 1, 4001)
    values = grid + np.mean(np.maximum(-x[None, :] - grid[:, None], 0.0), axis=1) / (1 - alpha)
    assert values.min() >= es - 1e-12


def test_shortfall_oce_trained_w_reaches_es():
    """Gradient descent on the OCE's w (what `fit` does jointly with a strategy) reaches the
    sorted-tail ES (float32; the bracket is flat near VaR)."""
    x = jnp.asarray(_normal(4000, seed=3), jnp.float32)
    measure = oce(ShortfallUtility(0.9))
    opt = optax.adam(0.05)
    state = opt.init(measure)

    @eqx.filter_jit
    def step(m, state):
        grads = eqx.filter_grad(lambda m: m(x))(m)
        updates, state = opt.update(grads, state)
        return eqx.apply_updates(m, updates), state

    for _ in range(400):
        measure, state = step(measure, state)
    es = _es_numpy(np.asarray(x, dtype=float), 0.9)
    assert float(measure(x)) == pytest.approx(es, abs=2e-3)
    assert float(measure(x)) >= es - 1e-5


# -------------------------------------------------------------------------- entropic as OCE

def test_entropic_of_normal_sample_closed_form(x64):
    """(1/a) log E[exp(-a X)] = -mu + a sigma^2 / 2 for X ~ N(mu, sigma^2), within 4 Monte
    Carlo standard errors (delta method on the sample mean of exp(-a X)); the OCE of the
    normalised exponential utility is the same number, and its argmin is that value too."""
    mu, sigma, a, n = 0.3, 1.5, 0.5, 200_000
    x = _normal(n, mu, sigma, seed=1)
    e = np.exp(-a * x)
    se = np.std(e, ddof=1) / np.sqrt(n) / (a * e.mean())
    closed = -mu + a * sigma**2 / 2
    measure = oce(ExponentialUtility(a))
    value = float(measure.infimum(jnp.asarray(x)))
    assert abs(value - closed) < 4 * se
    assert value == pytest.approx(float(risk.entropic(jnp.asarray(x), a)), rel=1e-12)
    assert float(measure.argmin(jnp.asarray(x))) == pytest.approx(value, rel=1e-10)


def test_exponential_oce_equals_entropic_float32():
    x = jnp.asarray(_normal(5000, 0.1, 2.0, seed=2), jnp.float32)
    for a in (0.1, 1.0, 5.0):
        assert float(oce(ExponentialUtility(a)).infimum(x)) == pytest.approx(
            float(risk.entropic(x, a)), rel=2e-5, abs=2e-5)


# ------------------------------------------------------------------- OCE minimum, grid search

def _grid_minimum(u, x, lo, hi, n=20_001):
    w = np.linspace(lo, hi, n)
    values = w - np.mean(u(x[None, :] + w[:, None]), axis=1)
    i = int(np.argmin(values))
    return values[i], w[i], w[1] - w[0]


@pytest.mark.parametrize("kind", ["exponential", "isoelastic_half", "isoelastic_log",
                                  "isoelastic_3"])
def test_oce_infimum_matches_grid_search(x64, kind):
    rng = np.random.default_rng(7)
    if kind == "exponential":
        a = 0.8
        x = rng.standard_normal(500) * 1.2 - 0.2
        u = lambda y: (1 - np.exp(-a * y)) / a  # noqa: E731
        utility, lo, hi = ExponentialUtility(a), -6.0, 6.0
    else:
        a = {"isoelastic_half": 0.5, "isoelastic_log": 1.0, "isoelastic_3": 3.0}[kind]
        x = np.exp(0.4 * rng.standard_normal(500))      # a wealth, > 0
        u = ((lambda y: np.log(y)) if a == 1.0 else (lambda y: y ** (1 - a) / (1 - a)))
        utility, lo, hi = IsoelasticUtility(a), -x.min() + 1e-6, 4.0
    best, w_best, h = _grid_minimum(u, x, lo, hi)
    measure = oce(utility)
    value = float(measure.infimum(jnp.asarray(x)))
    w = float(measure.argmin(jnp.asarray(x)))
    assert value <= best + 1e-12                    # the exact minimum is below any grid point
    assert best - value < 1e-6                      # and the grid's best is within O(h^2)
    assert abs(w - w_best) <= 2 * h
    # first-order condition E[u'(X + w)] = 1
    assert float(jnp.mean(utility.derivative(jnp.asarray(x) + w))) == pytest.approx(1, 1e-9)


class _UserExponential(risk.AbstractUtility):
    """A user's utility: only u itself (u' by autodiff, normalised: u'(0) = 1)."""

    def _u(self, y):
        return 1.0 - jnp.exp(-y)


def test_user_utility_subclass(x64):
    """pfhedge's OCE example utility 1 - exp(-x), written as a subclass: its OCE is the
    entropic risk with a = 1."""
    x = jnp.asarray(_normal(400, seed=13))
    value = float(oce(_UserExponential()).infimum(x))
    assert value == pytest.approx(float(risk.entropic(x, 1.0)), rel=1e-10)


def test_oce_call_at_w_is_the_bracket(x64):
    x = _normal(300, seed=4)
    for w in (-1.0, 0.0, 2.5):
        m = oce(ExponentialUtility(0.7), w)
        direct = w - np.mean((1 - np.exp(-0.7 * (x + w))) / 0.7)
        assert float(m(jnp.asarray(x))) == pytest.approx(direct, rel=1e-12)
        assert float(m(jnp.asarray(x))) >= float(m.infimum(jnp.asarray(x)))


def test_oce_accepts_a_hedge_result(x64):
    x = jnp.asarray(_normal(64, seed=5))
    z = jnp.zeros_like(x)
    result = HedgeResult(pnl=x, hedge_error=x, cost=z, n_trades=z.astype(jnp.int32),
                         unhedged_pnl=x, final_position=z, terminal_spot=z + 100.0,
                         initial_price=jnp.asarray(1.0))
    m = oce(ExponentialUtility(1.0), 0.2)
    assert float(m(result)) == float(m(x))
    assert float(m.infimum(result)) == float(m.infimum(x))


# ---------------------------------------------------------------------------- quadratic CVaR

def _quadratic_cvar_numpy(x, lam):
    """pfhedge's quadratic_cvar (pfhedge/nn/functional.py), transcribed: w solves
    E[max(0, -w - y)] = 1 / (2 lam) for y = x - mean(x) by bisection, then
    w + lam E[max(0, -w - y)^2] - mean(x)."""
    base = x.mean()
    y = x - base
    lo, hi = (-y).min() - 1e-8, (-y).max() + 1e-8
    g = lambda w: np.maximum(-w - y, 0).mean()  # noqa: E731
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if g(mid) > 1 / (2 * lam):
            lo = mid
        else:
            hi = mid
    w = 0.5 * (lo + hi)
    return w + lam * np.mean(np.maximum(-w - y, 0) ** 2) - base


@pytest.mark.parametrize("lam,scale", [(1.0, 1.0), (2.0, 3.0), (10.0, 0.5), (100.0, 10.0)])
def test_quadratic_cvar_matches_numpy_transcription(x64, lam, scale):
    x = _normal(2000, 0.3, scale, seed=int(lam))
    expected = _quadratic_cvar_numpy(x, lam)
    assert float(risk.quadratic_cvar(jnp.asarray(x), lam)) == pytest.approx(expected, rel=1e-9)
    # and it is the infimum over w of its defining bracket (grid search)
    grid = np.linspace(-x.max(), -x.min(), 20001)
    values = grid + lam * np.mean(np.maximum(-(x[None, :] + grid[:, None]), 0) ** 2, axis=1)
    assert float(risk.quadratic_cvar(jnp.asarray(x), lam)) <= values.min() + 1e-12


def test_quadratic_cvar_pfhedge_example_and_low_spread(x64):
    # pfhedge's docstring example: quadratic_cvar(-arange(10), 2.0) = 7.9750
    assert float(risk.quadratic_cvar(-jnp.arange(10.0), 2.0)) == pytest.approx(7.975, abs=1e-12)
    # a constant sample: inf_w w + lam max(0, -c - w)^2 = -c - 1 / (4 lam) exactly (pfhedge's
    # bisection, confined to [min loss, max loss], stops at -c: documented)
    assert float(risk.quadratic_cvar(jnp.full(5, 2.0), 4.0)) == pytest.approx(-2.0 - 1 / 16)


def test_quadratic_cvar_cash_invariance_and_float32():
    x = jnp.asarray(_normal(3000, seed=8), jnp.float32)
    v = float(risk.quadratic_cvar(x, 10.0))
    assert float(risk.quadratic_cvar(x + 5.0, 10.0)) == pytest.approx(v - 5.0, abs=1e-4)
    assert v == pytest.approx(_quadratic_cvar_numpy(np.asarray(x, float), 10.0), abs=1e-4)


# --------------------------------------------------------------------------------- utilities

def test_expected_utilities_against_numpy(x64):
    x = _normal(1000, seed=9)
    for a in (0.2, 1.0, 3.0):
        direct = np.mean((1 - np.exp(-a * x)) / a)
        assert float(risk.exponential_utility(jnp.asarray(x), a)) == pytest.approx(direct, 1e-12)
    w = np.exp(0.5 * _normal(1000, 0.0, 1.0, seed=10))
    for a in (0.3, 1.0, 2.5):
        direct = np.mean(np.log(w)) if a == 1.0 else np.mean(w ** (1 - a) / (1 - a))
        assert float(risk.isoelastic(jnp.asarray(w), a)) == pytest.approx(direct, rel=1e-12)


def test_utilities_elementwise_and_derivatives(x64):
    y = jnp.asarray([-1.5, -0.2, 0.3, 2.0])
    pos = jnp.asarray([0.2, 1.0, 3.0])
    cases = [(ExponentialUtility(0.7), y, lambda v: (1 - np.exp(-0.7 * v)) / 0.7,
              lambda v: np.exp(-0.7 * v)),
             (IsoelasticUtility(0.5), pos, lambda v: 2 * np.sqrt(v), lambda v: v ** -0.5),
             (IsoelasticUtility(1.0), pos, np.log, lambda v: 1 / v),
             (ShortfallUtility(0.9), y, lambda v: np.minimum(v, 0) / 0.1,
              lambda v: np.where(v < 0, 10.0, 0.0))]
    for u, v, f, df in cases:
        np.testing.assert_allclose(u(v), f(np.asarray(v)), rtol=1e-12)
        np.testing.assert_allclose(u.derivative(v), df(np.asarray(v)), rtol=1e-12)
        np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(u)))(v), df(np.asarray(v)),
                                   rtol=1e-12)
    # normalised: u(0) = 0, u'(0) = 1 for the exponential; u'(1) = 1 for the isoelastic
    assert float(ExponentialUtility(2.0)(0.0)) == 0.0
    assert float(jax.grad(ExponentialUtility(2.0))(0.0)) == 1.0
    assert float(jax.grad(IsoelasticUtility(4.0))(1.0)) == 1.0


# --------------------------------------------------------------------------------- gradients

@pytest.mark.slow  # compile-bound: the fast tier keeps the cheap checks
def test_gradients_equal_finite_differences(x64):
    """Every measure's gradient in the outcomes (one compiled Jacobian) against central
    differences of NumPy transcriptions of the same measures."""
    x = jnp.asarray(_normal(40, seed=11))

    def measures(v):
        wealth = jnp.exp(0.3 * v)
        return jnp.stack([
            risk.quadratic_cvar(v, 3.0),
            risk.exponential_utility(v, 0.6),
            risk.isoelastic(wealth, 0.5),
            oce(ExponentialUtility(0.6)).infimum(v),
            oce(IsoelasticUtility(2.0)).infimum(wealth),
            oce(ShortfallUtility(0.8)).infimum(v),
            oce(ExponentialUtility(0.6), 0.4)(v),
        ])

    jac = np.asarray(jax.jit(jax.jacrev(measures))(x))
    assert np.all(np.isfinite(jac))

    def iso_oce(v, a=2.0):          # inf_w w - E[u(v + w)]: E[(v + w)^-a] = 1 by bisection
        lo, hi = -v.min() + 1e-12, 1.0 - v.min()
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if np.mean((v + mid) ** -a) > 1 else (lo, mid)
        w = 0.5 * (lo + hi)
        return w - np.mean((v + w) ** (1 - a) / (1 - a))

    def references(v):              # NumPy, float64: the same seven measures
        wealth = np.exp(0.3 * v)
        return np.array([
            _quadratic_cvar_numpy(v, 3.0),
            np.mean((1 - np.exp(-0.6 * v)) / 0.6),
            np.mean(2 * np.sqrt(wealth)),
            np.log(np.mean(np.exp(-0.6 * v))) / 0.6,
            iso_oce(wealth),
            _es_numpy(v, 0.8),
            0.4 - np.mean((1 - np.exp(-0.6 * (v + 0.4))) / 0.6),
        ])

    xn = np.asarray(x)
    np.testing.assert_allclose(np.asarray(jax.jit(measures)(x)), references(xn), rtol=1e-9)
    eps = 1e-6
    for i in (0, 3, 17, 29):
        e = np.zeros_like(xn)
        e[i] = eps
        fd = (references(xn + e) - references(xn - e)) / (2 * eps)
        np.testing.assert_allclose(jac[:, i], fd, rtol=1e-5, atol=1e-8)
    # d/dw of the bracket: 1 - E[u'(X + w)]
    g = jax.jit(jax.grad(lambda m: m(x)))(oce(ExponentialUtility(0.6), 0.4)).w
    assert float(g) == pytest.approx(1 - float(jnp.mean(jnp.exp(-0.6 * (x + 0.4)))), 1e-12)


@pytest.mark.slow  # compile-bound: the fast tier keeps the cheap checks
def test_jit_and_vmap_pass_through():
    x = jnp.asarray(_normal(4 * 256, seed=12), jnp.float32).reshape(4, 256)
    m = oce(ExponentialUtility(1.0))
    batched = jax.jit(jax.vmap(m.infimum))(x)
    one_by_one = jnp.stack([eqx.filter_jit(m.infimum)(row) for row in x])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5)
    q = jax.jit(jax.vmap(lambda v: risk.quadratic_cvar(v, 5.0)))(x)
    np.testing.assert_allclose(q, [_quadratic_cvar_numpy(np.asarray(row, float), 5.0)
                                   for row in x], rtol=1e-5)
    # an OCE passes through jit as a pytree; its w is its one inexact leaf
    assert len(jax.tree.leaves(eqx.filter(m, eqx.is_inexact_array))) == 1
    assert float(jax.jit(lambda m, v: m(v))(m, x[0])) == pytest.approx(float(m(x[0])))


# --------------------------------------------------------------------------- bad parameters

@pytest.mark.parametrize("make,name", [
    (lambda: ExponentialUtility(0.0), "a"),
    (lambda: ExponentialUtility(-1.0), "a"),
    (lambda: ExponentialUtility(float("nan")), "a"),
    (lambda: IsoelasticUtility(0.0), "a"),
    (lambda: ShortfallUtility(1.0), "alpha"),
    (lambda: ShortfallUtility(0.0), "alpha"),
    (lambda: risk.quadratic_cvar(jnp.ones(4), 0.0), "lam"),
    (lambda: risk.quadratic_cvar(jnp.ones(4), -2.0), "lam"),
    (lambda: risk.exponential_utility(jnp.ones(4), -1.0), "a"),
    (lambda: risk.isoelastic(jnp.ones(4), 0.0), "a"),
    (lambda: oce(ExponentialUtility(1.0), float("inf")), "w"),
    (lambda: oce(lambda x: x), "utility"),
    (lambda: risk.isoelastic(jnp.asarray([1.0, -0.5, 2.0]), 0.5), "x > 0"),
    (lambda: IsoelasticUtility(0.5)(jnp.asarray([0.0])), "x > 0"),
    (lambda: oce(IsoelasticUtility(0.5), -1.5)(jnp.asarray([1.0, 2.0])), "x > 0"),
    (lambda: risk.quadratic_cvar(jnp.ones((2, 2)), 1.0), "1-D"),
    (lambda: oce(ExponentialUtility(1.0)).infimum(jnp.asarray([1.0, jnp.nan])), "non-finite"),
])
def test_bad_parameters_raise_naming_them(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_isoelastic_domain_checked_under_jit():
    f = jax.jit(lambda v: risk.isoelastic(v, 0.5))
    assert np.isfinite(float(f(jnp.asarray([1.0, 2.0]))))
    with pytest.raises(Exception, match="x > 0"):
        f(jnp.asarray([1.0, -2.0])).block_until_ready()
