"""Path-dependent books in the simulation: the path state hedge() carries, the Brownian bridge
of continuous monitoring, hedging laws and bit-identity.

References are independent of hedgejax's path state: payoffs recomputed in numpy from the
paths `simulate()` returns (the same paths hedge() sees), closed forms written here, and the
laws of hedging (a self-financing hedge under the risk-neutral measure has mean hedge error
0; its spread falls as rebalancing gets finer).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj

MODEL = hj.BlackScholes(100.0, 0.2, rate=0.02)
GRID = hj.TimeGrid(1.0, 40)
KEY = jax.random.key(5)


def _book_value_at_end(res):
    """The book's value at T on each path, from hedge()'s outputs."""
    r = float(MODEL.rate)
    return np.asarray(res.unhedged_pnl) + float(res.initial_price) * np.exp(r * 1.0)


def _discrete_references(paths):
    """Payoffs written from the stored paths (columns at t_0 .. t_40), independent of
    `_exotics`: discrete schedules on the grid."""
    logs = np.log(paths)
    final = paths[:, -1]
    return [
        (hj.Asian(100.0, 1.0), np.maximum(paths[:, 1:].mean(1) - 100.0, 0.0)),
        (hj.Asian(100.0, 1.0, option="put", average="geometric", fixings=8),
         np.maximum(100.0 - np.exp(logs[:, 5::5].mean(1)), 0.0)),
        (hj.Lookback(1.0, monitoring=20),
         final - np.minimum(paths[:, 0], paths[:, 2::2].min(1))),
        (hj.Lookback(1.0, strike=105.0, monitoring=40),
         np.maximum(np.maximum(paths[:, 0], paths[:, 1:].max(1)) - 105.0, 0.0)),
        (hj.ForwardStart(0.25, 1.0, moneyness=1.05), np.maximum(final - 1.05 * paths[:, 10], 0)),
        (hj.VarianceSwap(1.0, 0.2, notional=100.0),
         100.0 * ((np.diff(logs, axis=1) ** 2).sum(1) - 0.04)),
        (hj.Barrier(100.0, 90.0, 1.0, monitoring=40, rebate=2.0),
         np.where(paths[:, 1:].min(1) <= 90.0, 2.0, np.maximum(final - 100.0, 0.0))),
        (hj.Barrier(95.0, 110.0, 1.0, kind="up-and-in", option="put", monitoring=10),
         np.where(paths[:, 4::4].max(1) >= 110.0, np.maximum(95.0 - final, 0.0), 0.0)),
    ]


@pytest.mark.slow  # compile-bound: the slow tier keeps the fast one under 12 min
def test_carried_path_state_gives_the_payoffs_of_the_stored_paths():
    """Every discretely monitored instrument, alone and all in one book with a European
    call: the book's value at T equals the payoffs recomputed from the paths."""
    paths = np.asarray(hj.simulate(MODEL, GRID, 256, KEY), dtype=float)
    cases = _discrete_references(paths)
    quantities = [1.0, -2.0, 0.5, 1.0, 3.0, -1.0, 2.0, 1.5, -1.0]
    book = hj.Book([inst for inst, _ in cases] + [hj.EuropeanCall(100.0, 1.0)], quantities)
    expected = sum(q * ref for q, (_, ref) in zip(quantities, cases, strict=False))
    expected = expected + quantities[-1] * np.maximum(paths[:, -1] - 100.0, 0.0)
    res = hj.hedge(MODEL, book, hj.NoHedge(), None, GRID, 256, KEY)
    np.testing.assert_allclose(_book_value_at_end(res), expected, rtol=2e-5, atol=2e-3)
    for inst, ref in cases[:3]:   # and one by one through simulate(instrument=...)
        _, payoff = hj.simulate(MODEL, GRID, 256, KEY, instrument=inst)
        np.testing.assert_allclose(np.asarray(payoff), ref, rtol=2e-5, atol=1e-4)


def test_knock_in_plus_knock_out_is_the_vanilla_on_every_path():
    """Same path, same bridge draws: exactly one of the pair pays the vanilla payoff."""
    for monitoring in (None, 8):
        pair = [hj.Barrier(100.0, 92.0, 1.0, kind=k, monitoring=monitoring)
                for k in ("down-and-in", "down-and-out")]
        paths, both = hj.simulate(MODEL, GRID, 512, KEY, instrument=pair[0])
        _, out = hj.simulate(MODEL, GRID, 512, KEY, instrument=pair[1])
        vanilla = np.maximum(np.asarray(paths)[:, -1] - 100.0, 0.0)
        np.testing.assert_allclose(np.asarray(both) + np.asarray(out), vanilla, rtol=1e-6)


def _bridge_min_cdf(x0, x1, var_dt, level):
    """P(min of a Brownian bridge from x0 to x1 over a step of variance var_dt <= level)."""
    return np.where(level >= np.minimum(x0, x1), 1.0,
                    np.exp(-2.0 * (x0 - level) * (x1 - level) / var_dt))


def test_bridge_extremes_have_the_brownian_bridge_law():
    """One step of Black-Scholes: the sampled minimum's conditional law given the endpoints
    is the bridge's, P(min <= b | x0, x1) = exp(-2 (x0 - b)(x1 - b) / (s^2 dt)) (Glasserman
    2004, eq. 6.50); checked by the mean of the indicator against the mean probability, and
    the running minimum never above the grid points."""
    one = hj.TimeGrid(0.25, 1)
    lookback = hj.Lookback(0.25)     # floating call: its state is the running minimum
    paths, payoff = hj.simulate(MODEL, one, 200_000, KEY, instrument=lookback)
    paths = np.asarray(paths, dtype=float)
    running_min = paths[:, -1] - np.asarray(payoff, dtype=float)
    assert np.all(running_min <= np.minimum(paths[:, 0], paths[:, 1]) * (1 + 1e-6))
    x0, x1 = np.log(paths[:, 0]), np.log(paths[:, 1])
    for level in (np.log(95.0), np.log(90.0), np.log(85.0)):
        hit = (np.log(running_min) <= level).astype(float)
        p = _bridge_min_cdf(x0, x1, 0.04 * 0.25, level)
        se = np.std(hit - p) / np.sqrt(hit.size)
        assert abs(np.mean(hit - p)) < 4 * se + 1e-4, (level, np.mean(hit - p), se)


def _dao_call(s, k, h, r, vol, t):
    """Down-and-out call, K > H, no rebate, no dividend (Merton 1973; Hull, Options, Futures
    and Other Derivatives, 10th ed., section 26.9), written here independently."""
    from scipy.stats import norm

    def bs_call(spot, strike):
        d1 = (np.log(spot / strike) + (r + vol**2 / 2) * t) / (vol * np.sqrt(t))
        return spot * norm.cdf(d1) - strike * np.exp(-r * t) * norm.cdf(d1 - vol * np.sqrt(t))

    lam = (r + vol**2 / 2) / vol**2
    y = np.log(h**2 / (s * k)) / (vol * np.sqrt(t)) + lam * vol * np.sqrt(t)
    cdi = (s * (h / s) ** (2 * lam) * norm.cdf(y)
           - k * np.exp(-r * t) * (h / s) ** (2 * lam - 2) * norm.cdf(y - vol * np.sqrt(t)))
    return bs_call(s, k) - cdi


@pytest.mark.parametrize("n_steps", [1, 4])
def test_continuous_barrier_monte_carlo_has_no_grid_bias(n_steps):
    """With the bridge, a continuously monitored down-and-out call is priced without the
    grid's bias even with one or four steps (under Black-Scholes the bridge is exact)."""
    inst = hj.Barrier(100.0, 90.0, 1.0)
    price, se = hj.mc_price(MODEL, inst, 2**17, KEY, n_steps=n_steps)
    exact = _dao_call(100.0, 100.0, 90.0, 0.02, 0.2, 1.0)
    assert abs(float(price) - exact) < 4 * float(se), (float(price), exact, float(se))


def test_schedules_off_the_grid_and_unsupported_uses_are_refused():
    with pytest.raises(ValueError, match="fixings=7"):
        hj.hedge(MODEL, hj.Asian(100.0, 1.0, fixings=7), hj.DeltaHedge(), None, GRID, 64, KEY)
    with pytest.raises(ValueError, match="monitoring=3"):
        hj.hedge(MODEL, hj.Barrier(100.0, 90.0, 1.0, monitoring=3), hj.NoHedge(), None, GRID,
                 64, KEY)
    with pytest.raises(ValueError, match="ForwardStart.start"):
        hj.hedge(MODEL, hj.ForwardStart(0.33, 1.0), hj.NoHedge(), None, GRID, 64, KEY)
    with pytest.raises(ValueError, match="European"):
        hj.hedge(MODEL, hj.EuropeanCall(100.0, 1.0),
                 hj.DeltaGammaHedge(hj.Barrier(100.0, 80.0, 1.0)), None, GRID, 64, KEY)
    heston = hj.Heston(100.0, 0.04, 1.5, 0.04, 0.5, -0.7)
    with pytest.raises(ValueError, match="hedge_model"):
        hj.hedge(heston, hj.Barrier(100.0, 90.0, 1.0), hj.DeltaHedge(), None, GRID, 64, KEY)
    with pytest.raises(ValueError, match="instrument.maturity"):
        hj.simulate(MODEL, GRID, 8, KEY, instrument=hj.Asian(100.0, 0.5))


@pytest.mark.slow
def test_path_state_book_is_bit_identical_across_chunks_and_blocks():
    book = hj.Book([hj.Barrier(100.0, 90.0, 1.0), hj.Asian(100.0, 1.0, fixings=8),
                    hj.Lookback(1.0), hj.EuropeanPut(95.0, 1.0)], [1.0, -1.0, 0.5, 2.0])
    args = (MODEL, book, hj.DeltaHedge(), hj.Proportional(0.001), GRID, 700, KEY)
    reference = hj.hedge(*args)
    for kwargs in (dict(chunk_size=300), dict(block_size=128)):
        other = hj.hedge(*args, **kwargs)
        for field in ("pnl", "hedge_error", "cost", "final_position", "unhedged_pnl"):
            np.testing.assert_array_equal(np.asarray(getattr(other, field)),
                                          np.asarray(getattr(reference, field)),
                                          err_msg=f"{kwargs}: {field}")


HEDGED = [
    hj.Barrier(100.0, 85.0, 1.0),
    hj.Barrier(100.0, 120.0, 1.0, kind="up-and-out", rebate=1.0),
    hj.Barrier(100.0, 90.0, 1.0, kind="down-and-in", option="put", monitoring=20),
    hj.OneTouch(85.0, 1.0, payout=10.0, pay_at="expiry"),
    hj.Lookback(1.0),
    hj.Lookback(1.0, strike=100.0, option="put", monitoring=20),
    hj.Asian(100.0, 1.0),
    hj.Asian(100.0, 1.0, average="geometric", fixings=20),
    hj.ForwardStart(0.25, 1.0),
    hj.VarianceSwap(1.0, 0.2, notional=100.0),
]


# one in the fast tier, every instrument in the slow tier (`pytest -m slow`)
FAST = (0,)


@pytest.mark.parametrize("inst", [
    inst if i in FAST else pytest.param(inst, marks=pytest.mark.slow)
    for i, inst in enumerate(HEDGED)], ids=lambda i: type(i).__name__)
def test_delta_hedge_of_each_instrument_is_unbiased_and_improves_with_rebalancing(inst):
    """True model, no costs: the mean hedge error is within 4 SE of 0 and its spread falls
    as the grid gets finer (20 -> 80 rebalances: about halves for smooth payoffs; less for
    barriers, whose gamma explodes near the barrier)."""
    stds = []
    for n_steps in (20, 80):
        res = hj.hedge(MODEL, inst, hj.DeltaHedge(), None, hj.TimeGrid(1.0, n_steps), 4000,
                       KEY)
        err = np.asarray(res.hedge_error, dtype=float)
        se = err.std() / np.sqrt(err.size)
        assert abs(err.mean()) < 4 * se + 1e-6, (n_steps, err.mean(), se)
        assert np.all(np.isfinite(err))
        stds.append(err.std())
        unhedged = np.asarray(res.unhedged_pnl, dtype=float).std()
        if unhedged > 1e-6:
            assert stds[-1] <= unhedged * (1 + 1e-9), (stds[-1], unhedged)  # var swap: = (delta 0)
    assert stds[1] < 0.85 * stds[0], stds


@pytest.mark.slow  # compile-bound: the slow tier keeps the fast one under 12 min
def test_barrier_hedge_under_heston_world_with_black_scholes_greeks():
    """A Heston world, hedged with Black-Scholes Greeks (Heston has no barrier price): runs,
    bridge variance from the world's variance, finite P&L, and hedging helps."""
    heston = hj.Heston(100.0, 0.04, 1.5, 0.04, 0.5, -0.7, rate=0.02)
    res = hj.hedge(heston, hj.Barrier(100.0, 85.0, 1.0), hj.DeltaHedge(), None, GRID, 2000,
                   KEY, hedge_model=MODEL)
    err = np.asarray(res.hedge_error)
    assert np.all(np.isfinite(err))
    assert err.std() < 0.6 * np.asarray(res.unhedged_pnl).std()


@pytest.mark.slow  # compile-bound: the slow tier keeps the fast one under 12 min
def test_path_dependent_greeks_are_finite_at_the_barrier_and_hold_the_state():
    inst = hj.Barrier(100.0, 90.0, 1.0)
    for spot in (90.0, 90.0001, 95.0):
        g = hj.greeks(MODEL, inst, spot=spot)
        assert all(np.isfinite(v) for v in g.as_dict().values()), (spot, g)
    knocked = hj.price(MODEL, inst, spot=95.0, state={"knocked": jnp.asarray(True)})
    assert float(knocked) == 0.0
    with pytest.raises(ValueError, match="state"):
        hj.greeks(MODEL, hj.EuropeanCall(100.0, 1.0), state={"x": 1.0})


SHARDED = """
import json, jax, numpy as np, hedgejax as hj
model = hj.BlackScholes(100.0, 0.2, rate=0.02)
book = hj.Book([hj.Barrier(100.0, 90.0, 1.0), hj.Asian(100.0, 1.0, fixings=5)], [1.0, -1.0])
out = {}
for name, kw in [("1", {}), ("2", dict(devices=2)), ("2c", dict(devices=2, chunk_size=512))]:
    res = hj.hedge(model, book, hj.DeltaHedge(), hj.Proportional(0.001), hj.TimeGrid(1.0, 10),
                   1024, jax.random.key(0), **kw)
    out[name] = {f: np.asarray(getattr(res, f)).tolist()
                 for f in ("pnl", "hedge_error", "final_position", "unhedged_pnl")}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_path_state_book_is_bit_identical_across_devices():
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("2", "2c"):
        for field, values in out["1"].items():
            np.testing.assert_array_equal(out[name][field], values, err_msg=f"{name}: {field}")


BARRIER = hj.Barrier(100.0, 90.0, 1.0)


@pytest.mark.parametrize("inst, state, match", [
    (BARRIER, {"knock": False}, "keys"),
    (BARRIER, {"knocked": False, "x": 1.0}, "keys"),
    (BARRIER, {"knocked": 1.0}, "boolean"),
    (BARRIER, {"knocked": "yes"}, "boolean"),
    (BARRIER, [False], "dict"),
    (hj.Asian(100.0, 1.0), {"total": float("nan")}, r"state\['total'\] must be finite"),
    (hj.Asian(100.0, 1.0), {"total": -600.0}, r"state\['total'\] must be >= 0"),
    (hj.VarianceSwap(1.0, 0.2), {"sum_sq": -1.0}, r"state\['sum_sq'\] must be >= 0"),
    (hj.ForwardStart(0.25, 1.0), {"strike": -5.0}, r"state\['strike'\]"),
    (hj.OneTouch(90.0, 1.0), {"down": True, "touched": False}, "keys"),
    (hj.EuropeanCall(100.0, 1.0), {"knocked": False}, "path-dependent"),
])
def test_bad_path_states_raise_value_errors_naming_the_entry(inst, state, match):
    for fn in (hj.price, lambda *a, **k: hj.greeks(*a, **k)):
        with pytest.raises(ValueError, match=match):
            fn(MODEL, inst, spot=95.0, t=0.5, state=state)


@pytest.mark.slow  # compile-bound (~20 s): the 3.11 fast tier is at its budget
def test_book_states_are_one_per_group():
    book = hj.Book([BARRIER, BARRIER, hj.Lookback(1.0), hj.EuropeanCall(100.0, 1.0)])
    for bad, match in [(({"knocked": True},), "one entry per group"),
                       ({"knocked": True}, "one entry per group"),
                       (({"knocked": True}, {"extreme": 1.0}, None), "leading axis of 2"),
                       ((None, {"extreme": jnp.zeros(1)}, None), "state dict")]:
        with pytest.raises(ValueError, match=match):
            hj.price(MODEL, book, spot=95.0, t=0.5, state=bad)
    state = ({"knocked": jnp.asarray([True, False])}, {"extreme": jnp.log(jnp.asarray([90.0]))},
             None)
    expected = (hj.price(MODEL, BARRIER, spot=95.0, t=0.5, state={"knocked": False})
                + hj.price(MODEL, hj.Lookback(1.0), spot=95.0, t=0.5,
                           state={"extreme": jnp.log(90.0)})
                + hj.price(MODEL, hj.EuropeanCall(100.0, 1.0), spot=95.0, t=0.5))
    assert float(hj.price(MODEL, book, spot=95.0, t=0.5, state=state)) == pytest.approx(
        float(expected), rel=1e-6)


def test_asian_every_step_under_jit_asks_for_a_concrete_maturity():
    with pytest.raises(ValueError, match="fixings=None"):
        jax.jit(lambda k: hj.hedge(MODEL, hj.Asian(k, 0.25), hj.DeltaHedge(), None,
                                   hj.TimeGrid(0.25, 10), 64, KEY).pnl.mean())(100.0)


@pytest.mark.slow
def test_fit_learns_on_a_path_dependent_book_with_every_step_fixings():
    """fit() resolves an Asian's fixings=None before tracing (one per grid step)."""
    grid = hj.TimeGrid(0.25, 10)
    book = hj.Book([hj.Asian(100.0, 0.25), hj.Barrier(100.0, 90.0, 0.25)])
    for strategy in (hj.NeuralHedge(key=KEY, hidden=8), hj.LearnedBand(KEY, hidden=8)):
        fitted, history = hj.fit(strategy, hj.risk.mean_cost_variance(lam=0.1), MODEL, book,
                                 hj.Proportional(0.002), grid, key=KEY, steps=3, n_paths=256,
                                 progress=False)
        assert np.all(np.isfinite(np.asarray(history.objective)))
