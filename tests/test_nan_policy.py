"""The NaN policy: defined results are returned (prices at spot 0), undefined inputs raise a
ValueError naming them (bad spot or time, samples too small for a statistic), and finite
inputs give finite statistics (no overflow in the moments)."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj

MODELS = {
    "BlackScholes": hj.BlackScholes(100.0, 0.2, rate=0.03),
    "Heston": hj.Heston(100.0, 0.04, 1.5, 0.04, 0.3, -0.7, rate=0.03),
    "Merton": hj.Merton(100.0, 0.2, 1.0, -0.1, 0.1, rate=0.03),
}
CALL, PUT = hj.EuropeanCall(100.0, 1.0), hj.EuropeanPut(100.0, 1.0)


@pytest.mark.parametrize("fn", [hj.price, hj.greeks])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("kwargs, param", [
    (dict(spot=-5.0), "spot"), (dict(spot=math.nan), "spot"), (dict(spot=math.inf), "spot"),
    (dict(t=math.nan), "t"), (dict(t=-math.inf), "t")])
def test_bad_spot_or_time_is_refused_by_name(fn, model, kwargs, param):
    with pytest.raises(ValueError, match=rf"^{param} must be finite"):
        fn(MODELS[model], CALL, **kwargs)


def test_black_scholes_prices_at_spot_zero_are_the_limits():
    """At spot 0 the call is worthless and the put is worth the discounted strike."""
    model = MODELS["BlackScholes"]
    assert float(hj.price(model, CALL, spot=0.0)) == 0.0
    assert float(hj.price(model, PUT, spot=0.0)) == pytest.approx(100.0 * math.exp(-0.03),
                                                                  rel=1e-6)


STATS = {
    "mean": hj.risk.mean,
    "entropic": lambda x: hj.risk.entropic(x, 1.0),
    "var": lambda x: hj.risk.var(x, 0.99),
    "expected_shortfall": lambda x: hj.risk.expected_shortfall(x, 0.99),
    "variance": hj.risk.variance,
    "std": hj.risk.std,
    "stderr": hj.risk.stderr,
}


@pytest.mark.parametrize("name", list(STATS))
@pytest.mark.parametrize("x, problem", [(jnp.zeros((0,)), "at least"),
                                        (jnp.zeros((10, 2)), "1-D"),
                                        (jnp.zeros(()), "1-D")])
def test_statistics_name_a_sample_they_cannot_use(name, x, problem):
    with pytest.raises(ValueError, match=rf"risk\.\w+ needs .*{problem}"):
        STATS[name](x)


@pytest.mark.parametrize("name", ["variance", "std", "stderr"])
def test_spread_of_one_outcome_is_undefined(name):
    with pytest.raises(ValueError, match="at least 2"):
        STATS[name](jnp.ones(1))


def test_statistics_check_shapes_under_jit():
    with pytest.raises(ValueError, match="1-D"):
        jax.jit(hj.risk.expected_shortfall)(jnp.zeros((4, 4)))


def _result(n_paths):
    return hj.hedge(MODELS["BlackScholes"], CALL, hj.DeltaHedge(), hj.Proportional(1e-3),
                    hj.TimeGrid(1.0, 10), n_paths, jax.random.key(0))


def test_summary_of_one_path_is_refused():
    with pytest.raises(ValueError, match="summary needs at least 2"):
        hj.summary(_result(1))


def test_summary_of_huge_finite_pnls_is_finite_and_right():
    """P&Ls near float32's largest value: squares overflow in float32, not in the summary."""
    res = _result(256)
    scale = np.float32(1e36)
    big = eqx.tree_at(lambda r: (r.pnl, r.hedge_error, r.unhedged_pnl), res,
                      (res.pnl * scale, res.hedge_error * scale, res.unhedged_pnl * scale))
    assert bool(jnp.all(jnp.isfinite(big.pnl)))
    stats = hj.summary(big)
    assert all(math.isfinite(v) for v in stats.values())
    pnl64 = np.asarray(res.pnl, np.float64) * float(scale)
    assert stats["std"] == pytest.approx(np.std(pnl64, ddof=1), rel=1e-6)
    small = hj.summary(res)
    assert stats["hedge_effectiveness"] == pytest.approx(small["hedge_effectiveness"],
                                                         rel=1e-5)
    assert stats["es"] == pytest.approx(small["es"] * float(scale), rel=1e-5)


@pytest.mark.parametrize("fn", [hj.mc_price, hj.mc_greeks])
def test_monte_carlo_needs_two_paths_for_a_standard_error(fn):
    with pytest.raises(ValueError, match="n_paths must be >= 2"):
        fn(MODELS["BlackScholes"], CALL, 1, jax.random.key(0))


def test_evaluate_needs_two_paths_per_batch_and_names_them():
    """Found by review: 30 paths in the default 20 batches used to give one-path batches."""
    args = (hj.BandHedge(0.05), hj.risk.mean_cost_variance(lam=0.1), MODELS["BlackScholes"],
            CALL, None, hj.TimeGrid(0.25, 5))
    with pytest.raises(ValueError, match=r"n_paths must be >= 2 x batches = 40.*n_paths=30"):
        hj.evaluate(*args, n_paths=30, key=jax.random.key(0))
    stats = hj.evaluate(*args, n_paths=30, key=jax.random.key(0), batches=15)
    assert math.isfinite(stats["objective_stderr"]) and stats["objective_stderr"] > 0


def test_stream_summary_refuses_one_path_like_summary():
    with pytest.raises(ValueError, match="n_paths must be >= 2"):
        hj.stream_summary(MODELS["BlackScholes"], CALL, hj.DeltaHedge(), None,
                          hj.TimeGrid(1.0, 10), 1, jax.random.key(0))


@pytest.mark.parametrize("name", list(STATS))
def test_statistics_take_lists_and_name_non_numbers(name):
    values = [1.0, -2.0, 3.0, 0.5]
    assert float(STATS[name](values)) == pytest.approx(float(STATS[name](jnp.asarray(values))))
    with pytest.raises(ValueError, match=r"risk\.\w+ input must be a real number"):
        STATS[name](["a", "b", "c"])


@pytest.mark.parametrize("field", ["hedge_error", "cost", "unhedged_pnl"])
def test_summary_names_a_non_finite_field(field):
    res = _result(64)
    bad = eqx.tree_at(lambda r: getattr(r, field), res,
                      getattr(res, field).at[3].set(jnp.inf))
    with pytest.raises(ValueError, match=f"result.{field} has non-finite values"):
        hj.summary(bad)


def test_greeks_need_a_scalar_spot_and_point_to_vmap():
    model = MODELS["BlackScholes"]
    with pytest.raises(ValueError, match="spot and t must be scalars.*jax.vmap"):
        hj.greeks(model, CALL, spot=jnp.array([90.0, 100.0]))
    deltas = jax.vmap(lambda s: hj.greeks(model, CALL, spot=s).delta)(jnp.array([90.0, 110.0]))
    assert bool(deltas[0] < deltas[1])


@pytest.mark.parametrize("make, match", [
    (lambda: hj.ExecutionLag(hj.DeltaHedge(), steps=10**6), r"steps must be .*\[1, 1000\]"),
    (lambda: hj.LearnedBand(jax.random.key(0), depth=10**6), r"depth must be .*\[0, 64\]"),
    (lambda: hj.LearnedBand(jax.random.key(0), hidden=10**7), r"hidden must be .*\[1, 4096\]"),
    (lambda: hj.NeuralHedge(jax.random.key(0), depth=65), r"depth must be .*\[0, 64\]"),
])
def test_absurd_sizes_fail_fast_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("lag", [4, 5, 12])
@pytest.mark.parametrize("wrap", [lambda s: s, lambda s: hj.Limits(s, max_position=1.0)])
def test_a_lag_as_long_as_the_grid_is_refused(lag, wrap):
    """An order decided at step 0 would fill after the grid ends: nothing would ever trade."""
    strategy = wrap(hj.ExecutionLag(hj.DeltaHedge(), steps=lag))
    with pytest.raises(ValueError, match=rf"ExecutionLag steps must be < .*n_steps=4.*={lag}"):
        hj.hedge(MODELS["BlackScholes"], CALL, strategy, None, hj.TimeGrid(1.0, 4), 64,
                 jax.random.key(0))
    ok = hj.hedge(MODELS["BlackScholes"], CALL, wrap(hj.ExecutionLag(hj.DeltaHedge(), 3)),
                  None, hj.TimeGrid(1.0, 4), 64, jax.random.key(0))
    assert bool(jnp.all(ok.n_trades >= 1))


def _bs_greeks_closed_form(spot, strike, tau, vol, r, q, put):
    """Black-Scholes delta, theta (dV/dt) and rho in closed form (Hull, ch. 19)."""
    from statistics import NormalDist

    n = NormalDist()
    d1 = (math.log(spot / strike) + (r - q + vol**2 / 2) * tau) / (vol * math.sqrt(tau))
    d2 = d1 - vol * math.sqrt(tau)
    dq, dr = math.exp(-q * tau), math.exp(-r * tau)
    decay = -spot * dq * n.pdf(d1) * vol / (2 * math.sqrt(tau))
    if put:
        return (-dq * n.cdf(-d1), decay + r * strike * dr * n.cdf(-d2)
                - q * spot * dq * n.cdf(-d1), -strike * tau * dr * n.cdf(-d2))
    return (dq * n.cdf(d1), decay - r * strike * dr * n.cdf(d2) + q * spot * dq * n.cdf(d1),
            strike * tau * dr * n.cdf(d2))


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("put", [False, True], ids=["call", "put"])
@pytest.mark.parametrize("digital", [False, True], ids=["vanilla", "digital"])
def test_greeks_at_spot_zero_are_the_limits(model, put, digital):
    """S = 0 is absorbing: V = e^{-r tau} payoff(0) + e^{-q tau} payoff'(0) S + o(S). The
    put's limits (delta -e^{-q tau}, theta r K e^{-r tau}, rho -tau K e^{-r tau}) are written
    out here; the call's and digitals' are 0 (a digital put pays e^{-r tau} cash)."""
    m = MODELS[model].replace(div=0.01)
    strike, tau, r, q = 100.0, 1.0, 0.03, 0.01
    inst = (hj.Digital(strike, tau, put=put) if digital else
            hj.EuropeanPut(strike, tau) if put else hj.EuropeanCall(strike, tau))
    if digital and model == "Heston":
        with pytest.raises(TypeError, match="no price for Digital under Heston"):
            hj.greeks(m, inst, spot=0.0)
        return
    level = 0.0 if not put else (1.0 if digital else strike)
    expected = dict(delta=-math.exp(-q * tau) if put and not digital else 0.0,
                    gamma=0.0, vega=0.0, vanna=0.0, volga=0.0,
                    theta=r * level * math.exp(-r * tau), rho=-tau * level * math.exp(-r * tau))
    for g in (hj.greeks(m, inst, spot=0.0),
              jax.jit(lambda s: hj.greeks(m, inst, spot=s))(0.0)):
        for name, value in expected.items():
            assert float(getattr(g, name)) == pytest.approx(value, rel=1e-6, abs=1e-6), name
    book = hj.Book([inst, hj.EuropeanCall(90.0, 0.5)], [2.0, 1.0])
    per = hj.greeks(m, book, spot=0.0, per_instrument=True)
    assert float(per.delta[0]) == pytest.approx(2 * expected["delta"], rel=1e-6, abs=1e-6)
    assert float(per.rho[0]) == pytest.approx(2 * expected["rho"], rel=1e-6, abs=1e-6)
    assert float(per.delta[1]) == 0.0 and float(per.rho[1]) == 0.0


@pytest.mark.parametrize("put", [False, True], ids=["call", "put"])
def test_greeks_near_spot_zero_approach_the_limits(x64, put):
    """Continuity: Black-Scholes closed-form Greeks at S = 1 (K = 100, deep out of or in the
    money) are within 1e-9 of the limits returned at S = 0."""
    m = hj.BlackScholes(100.0, 0.2, rate=0.03, div=0.01)
    inst = hj.EuropeanPut(100.0, 1.0) if put else hj.EuropeanCall(100.0, 1.0)
    near = _bs_greeks_closed_form(1.0, 100.0, 1.0, 0.2, 0.03, 0.01, put)
    at_zero = hj.greeks(m, inst, spot=0.0)
    # delta moves by O(S) e^{-q tau} N'(d1)... which is ~0 here; theta and rho by q S, r S
    assert float(at_zero.delta) == pytest.approx(near[0], abs=1e-9)
    assert float(at_zero.theta) == pytest.approx(near[1] + (0.01 * 1.0 * math.exp(-0.01)
                                                            if put else 0.0), abs=1e-9)
    assert float(at_zero.rho) == pytest.approx(near[2], abs=1e-9)


def test_hedge_names_the_non_finite_part_eagerly_and_under_jit():
    """An exploding world (drift 50/yr for 5 years overflows float32) is refused with
    NonFiniteError (a ValueError) naming the simulated spot, and the number of paths."""
    m = hj.BlackScholes(100.0, 3.0, drift=50.0)
    args = (CALL, hj.DeltaHedge(), None, hj.TimeGrid(5.0, 50), 256, jax.random.key(0))
    with pytest.raises(hj.NonFiniteError, match=r"simulated spot is non-finite on 256 of "
                                                r"256 paths \(first: path 0\)"):
        hj.hedge(m, *args)
    with pytest.raises(ValueError, match="simulated spot is non-finite"):
        hj.hedge(m, *args, chunk_size=64)
    with pytest.raises(RuntimeError, match="simulated spot is non-finite on some paths"):
        jax.block_until_ready(jax.jit(lambda d: hj.hedge(m.replace(drift=d), *args).pnl)(50.0))


@pytest.mark.parametrize("call, match", [
    (lambda: hj.hedge(MODELS["BlackScholes"], CALL, hj.DeltaHedge(), None,
                      hj.TimeGrid(1.0, 4), 2**32 - 1, jax.random.key(0)),
     r"hedge\(\) with n_paths=4,294,967,295 .* needs about [\d,.]+ GiB"),
    (lambda: hj.simulate(MODELS["BlackScholes"], hj.TimeGrid(1.0, 252), 10**9,
                         jax.random.key(0)),
     r"simulate\(\) of 1,000,000,000 paths x 253 times needs about [\d,.]+ GiB"),
    (lambda: hj.mc_price(MODELS["BlackScholes"], CALL, 2**32 - 2, jax.random.key(0)),
     r"n_paths=4,294,967,294 needs about [\d,.]+ GiB"),
], ids=["hedge", "simulate", "mc_price"])
def test_runs_that_cannot_fit_in_memory_are_refused_with_the_estimate(call, match,
                                                                       monkeypatch):
    import hedgejax._validate as validate

    monkeypatch.setattr(validate, "memory_limit", lambda: 24 * 2**30)
    with pytest.raises(ValueError, match=match):
        call()


# Heston compiles its Fourier pricer for ~15 s: the slow tier (Black-Scholes and Merton here)
@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m == "Heston"
                                   else m for m in MODELS])
def test_greeks_that_underflow_are_refused_by_name(model):
    """At spot 1e-30 of a 100 strike the second derivatives underflow in float32: refused
    with NonFiniteError naming them (eagerly) or the same text under jit, never NaN."""
    with pytest.raises(hj.NonFiniteError, match=r"greeks\(\): .*gamma.* not finite"):
        hj.greeks(MODELS[model], CALL, spot=1e-30)
    with pytest.raises(RuntimeError, match=r"greeks\(\): a result of EuropeanCall"):
        jax.block_until_ready(jax.jit(lambda s: hj.greeks(MODELS[model], CALL,
                                                          spot=s).gamma)(1e-30))


@pytest.mark.parametrize("rate", [-10.0, -100.0])
def test_prices_that_overflow_are_refused(rate):
    """A put's K e^{-r T} overflows float32 for r T <= -89: NonFiniteError, not NaN or inf
    (Monte Carlo too)."""
    model = hj.BlackScholes(100.0, 0.2, rate=rate)
    put = hj.EuropeanPut(100.0, 20.0)
    with pytest.raises(hj.NonFiniteError, match=r"price\(\): price of EuropeanPut under "
                                                r"BlackScholes is not finite"):
        hj.price(model, put)
    with pytest.raises(hj.NonFiniteError, match=r"greeks\(\):"):
        hj.greeks(model, put)
    with pytest.raises(hj.NonFiniteError, match=r"mc_price\(\): price"):
        hj.mc_price(model, put, 64, jax.random.key(0))
    with pytest.raises(RuntimeError, match=r"price\(\): a result of EuropeanPut"):
        jax.block_until_ready(jax.jit(lambda r: hj.price(model.replace(rate=r), put))(rate))


def test_statistics_of_extreme_finite_outcomes_are_finite_and_right():
    """float32 outcomes near its largest value: the true std (2.63e38, from float64 NumPy)
    and mean fit in float32 and come out right; the variance (6.9e76) does not and is
    refused by name."""
    x = jnp.asarray([3e38, -3e38, 1e38, 2e38], jnp.float32)
    want = np.asarray(x, np.float64)
    assert float(hj.risk.std(x)) == pytest.approx(np.std(want, ddof=1), rel=1e-6)
    assert float(hj.risk.mean(x)) == pytest.approx(np.mean(want), rel=1e-6)
    assert float(jax.jit(hj.risk.std)(x)) == pytest.approx(np.std(want, ddof=1), rel=1e-6)
    tiny = jnp.asarray([1e-38, 3e-38], jnp.float32)     # squares underflow without scaling
    assert float(hj.risk.std(tiny)) == pytest.approx(np.std(np.asarray(tiny, np.float64),
                                                            ddof=1), rel=1e-5)
    with pytest.raises(hj.NonFiniteError, match=r"risk\.variance: the result overflows"):
        hj.risk.variance(x)


@pytest.mark.parametrize("name", ["mean", "std", "variance", "stderr", "var",
                                  "expected_shortfall", "entropic"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_statistics_refuse_non_finite_outcomes(name, bad):
    fn = getattr(hj.risk, name)
    with pytest.raises(ValueError, match=rf"risk\.{name} input has non-finite values"):
        fn([1.0, bad, 2.0])
    with pytest.raises(RuntimeError, match=rf"risk\.{name} input has non-finite values"):
        jax.block_until_ready(jax.jit(fn)(jnp.asarray([1.0, bad, 2.0])))


@pytest.mark.parametrize("book", [hj.EuropeanCall(1e6, 1.0), hj.Book([CALL], [0.0])],
                         ids=["worthless", "zero-quantity"])
def test_undefined_effectiveness_is_announced(book):
    """A book whose unhedged P&L does not vary has no hedge effectiveness: NaN, with an
    UndefinedStatisticWarning (summary and stream_summary alike)."""
    args = (MODELS["BlackScholes"], book, hj.DeltaHedge(), hj.Proportional(1e-3),
            hj.TimeGrid(1.0, 12))
    with pytest.warns(hj.UndefinedStatisticWarning, match="hedge_effectiveness is undefined"):
        out = hj.summary(hj.hedge(*args, 256, jax.random.key(0)))
    assert math.isnan(out["hedge_effectiveness"])
    with pytest.warns(hj.UndefinedStatisticWarning):
        out = hj.stream_summary(*args, n_paths=256, key=jax.random.key(0), chunk_size=128)
    assert math.isnan(out["hedge_effectiveness"])


@pytest.mark.parametrize("field", ["cost", "hedge_error", "terminal_spot"])
def test_hedge_check_runs_whichever_output_is_used(field):
    """Under jit JAX drops a check whose output is unused: it rides on every field."""
    m = hj.BlackScholes(100.0, 3.0, drift=50.0)
    run = jax.jit(lambda d: getattr(hj.hedge(m.replace(drift=d), CALL, hj.DeltaHedge(),
                                             hj.Proportional(1e-3), hj.TimeGrid(5.0, 50), 64,
                                             jax.random.key(0)), field))
    with pytest.raises(RuntimeError, match="hedge\\(\\): the simulated spot is non-finite"):
        jax.block_until_ready(run(50.0))
