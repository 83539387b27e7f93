"""`hj.rebalance` (today's decision for a live book), strategy files (`hj.save_strategy`,
`hj.load_strategy`) and `hedgejax rebalance`.

The reference for `rebalance` is `hedge()` itself on a simulated path: `hedge(..., record=k)`
records what the loop saw and did at every step (spot, variance, path state, position,
trade, cost), and `rebalance` called step by step on those inputs must make the same
decisions bit for bit (it runs the same `_observe` and `strategy.decide`, not a second
implementation). Single decisions are also checked against closed forms: the Black-Scholes
delta N(d1) (scipy), a band's clip, the cost formula.
"""

import json
import os
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

import hedgejax as hj
from hedgejax._rebalance import rebalance
from hedgejax._strategy_file import load_strategy, save_strategy

S0, VOL = 100.0, 0.2
GRID = hj.TimeGrid(0.25, 12)
KEY = jax.random.key(7)
K_PATHS = 6


def _perturbed(policy, scale=0.3, seed=1):
    """A policy with every weight moved off its initial value (an untrained NeuralHedge's
    output layer is zero: it would be delta hedging, and its state would not matter)."""
    leaves, treedef = jax.tree.flatten(policy)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [x + scale * jax.random.normal(k, x.shape, x.dtype)
              if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating) else x
              for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, leaves)


def _replay(trace, strategy, book, model, costs, grid, *, variance=False, path=None,
            units=False):
    """`rebalance` at every step of the recorded paths, all k paths at once (one call per
    step), feeding back its position and state: (positions, trades, costs, deltas,
    units or None), each (k, n_steps)."""
    n = grid.n_steps
    k = trace.spot.shape[0]
    shares = np.zeros(k)
    position = (shares, np.zeros(k)) if units else shares
    state = None
    out = {name: [] for name in ("target", "trade", "cost", "delta", "units")}
    for i in range(n):
        kwargs = {}
        if variance:
            kwargs["variance"] = trace.variance[:, i]
        if path is not None:
            kwargs["path_state"] = path(i)
        r = rebalance(strategy, book, model, trace.spot[:, i], float(trace.time[i]),
                      position, state, grid=grid, costs=costs, **kwargs)
        assert r.step == i
        position, state = r.position, r.state
        for name in out:
            value = getattr(r, name)
            out[name].append(None if value is None else np.asarray(value))
    return {name: None if v[0] is None else np.stack(v, axis=1) for name, v in out.items()}


def _assert_replayed(result, trace, exact=True):
    check = (np.testing.assert_array_equal if exact else
             lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14))
    check(result["target"], trace.position)
    check(result["trade"], trace.trade)
    check(result["cost"], trace.cost)
    check(result["delta"], trace.delta)


CASES = {
    # a step-based schedule: the step index must be hedge()'s
    "delta-every-3": lambda: (hj.DeltaHedge(every=3), hj.Proportional(2e-3)),
    # stateless but position-dependent; reads the costs' rate, gamma and time to maturity
    "whalley-wilmott": lambda: (hj.WhalleyWilmott(0.5), hj.Proportional(5e-3)),
    # a recurrent policy: its hidden state must be carried by rebalance
    "neural-recurrent": lambda: (_perturbed(hj.NeuralHedge(jax.random.key(3), 4, 1,
                                                           hidden_state=2)),
                                 hj.Proportional(1e-3)),
    # a stateful wrapper (spot at the last rebalance) around a step-based schedule
    "move-based-every-3": lambda: (hj.MoveBased(0.01, hj.DeltaHedge(every=3)),
                                   hj.Spread(0.01)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_rebalance_replays_hedge_trades_bit_for_bit_float64(x64, name):
    strategy, costs = CASES[name]()
    model = hj.BlackScholes(S0, VOL, rate=0.02, div=0.01)
    call = hj.EuropeanCall(100.0, 0.25)
    res = hj.hedge(model, call, strategy, costs, GRID, 64, KEY, record=K_PATHS)
    _assert_replayed(_replay(res.trace, strategy, call, model, costs, GRID), res.trace)


def _heston_world():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hj.FellerWarning)
        return hj.Heston(S0, 0.04, 1.5, 0.04, 0.5, -0.7)


def _heston_world_replay():
    """A Heston world hedged by a recurrent policy that reads the world's variance, with
    Black-Scholes deltas at 20%: rebalance is given the recorded variance and carries the
    policy's hidden state."""
    world, hedger = _heston_world(), hj.BlackScholes(S0, VOL)
    policy = _perturbed(hj.NeuralHedge(jax.random.key(4), 4, 1, hidden_state=2,
                                       variance_feature=True))
    call, costs = hj.EuropeanCall(100.0, 0.25), hj.Proportional(1e-3)
    res = hj.hedge(world, call, policy, costs, GRID, 64, KEY, hedge_model=hedger,
                   record=K_PATHS)
    assert res.trace.variance is not None
    replay = _replay(res.trace, policy, call, hedger, costs, GRID, variance=True)
    _assert_replayed(replay, res.trace)
    return res.trace


@pytest.mark.slow  # ~8 s: a Heston world and a GRU policy compile
def test_rebalance_replays_a_heston_world_and_a_recurrent_policy_float32():
    """float32 (the default): the same layout and compiled arithmetic give the same bits."""
    assert _heston_world_replay().spot.dtype == np.float32


@pytest.mark.slow
def test_rebalance_replays_a_heston_world_and_a_recurrent_policy_float64(x64):
    assert _heston_world_replay().spot.dtype == np.float64


@pytest.mark.slow  # ~8 s: barrier pricers compile in the replay and in hedge()
def test_rebalance_replays_a_barrier_book_with_its_path_state(x64):
    """A down-and-out call (continuous monitoring, the Brownian-bridge knock in the world),
    hedged by a stateful wrapper (rebalance when spot moved 1% since the last rebalance)
    around a step-based schedule (every 3 steps): rebalance is given the recorded knocked
    flag and carries the wrapper's state; a knocked-out option has no delta.
    To the last bits, not bit for bit: XLA compiles the barrier pricer's arithmetic
    differently inside hedge()'s loop (module docstring of hedgejax._rebalance; measured:
    about a third of the steps differ by 1-4 ulp of the delta)."""
    model = hj.BlackScholes(S0, 0.35)
    barrier = hj.Barrier(100.0, 92.0, 0.25)
    strategy, costs = CASES["move-based-every-3"]()
    res = hj.hedge(model, barrier, strategy, costs, GRID, 64, jax.random.key(11), record=16)
    trace = res.trace
    knocked = np.asarray(trace.path[0]["knocked"][:, :, 0])       # (k, n + 1)
    assert knocked[:, -1].any() and not knocked[:, -1].all()      # both kinds of paths
    replay = _replay(trace, strategy, barrier, model, costs, GRID,
                     path=lambda i: {"knocked": knocked[:, i]})
    _assert_replayed(replay, trace, exact=False)
    held = replay["trade"] == 0.0
    assert held.any() and not held.all()        # the wrapper holds on some steps
    dead = knocked[:, :-1]
    np.testing.assert_array_equal(replay["delta"][dead], 0.0)


@pytest.mark.slow
def test_rebalance_matches_a_heston_hedge_model_to_the_last_bits(x64):
    """The Fourier-priced Heston hedge model: XLA compiles its complex arithmetic
    differently inside hedge()'s loop, so deltas agree to about an ulp, not bit for bit
    (module docstring of hedgejax._rebalance)."""
    model = _heston_world()
    grid = hj.TimeGrid(0.25, 6)
    call = hj.EuropeanCall(100.0, 0.25)
    res = hj.hedge(model, call, hj.DeltaHedge(), None, grid, 64, KEY, record=4,
                   pricing="exact")
    replay = _replay(res.trace, hj.DeltaHedge(), call, model, None, grid, variance=True)
    _assert_replayed(replay, res.trace, exact=False)


@pytest.mark.slow
def test_rebalance_replays_an_option_hedge(x64):
    """A delta-gamma hedge with a listed option and its own costs: positions (shares,
    units), the option's price and the cost of both trades."""
    model = hj.BlackScholes(S0, VOL)
    option = hj.EuropeanCall(105.0, 0.5)
    strategy = hj.DeltaGammaHedge(option, costs=hj.Spread(0.02))
    costs = hj.Proportional(1e-3)
    book = hj.Book([hj.EuropeanCall(100.0, 0.25)], [-10.0])
    res = hj.hedge(model, book, strategy, costs, GRID, 64, KEY, record=K_PATHS)
    replay = _replay(res.trace, strategy, book, model, costs, GRID, units=True)
    np.testing.assert_array_equal(replay["target"], res.trace.position)
    np.testing.assert_array_equal(replay["units"], res.trace.option_units)
    np.testing.assert_array_equal(replay["trade"], res.trace.trade)
    np.testing.assert_array_equal(replay["delta"], res.trace.delta)
    # hedge() prices the option at t_{i-1} + dt, rebalance at i dt: equal to rounding
    np.testing.assert_allclose(replay["cost"], res.trace.cost, rtol=1e-12)


# ------------------------------------------------------------------ one decision, by hand


def _bs_delta(s, k, tau, vol, r=0.0, q=0.0):
    d1 = (np.log(s / k) + (r - q + vol**2 / 2) * tau) / (vol * np.sqrt(tau))
    return np.exp(-q * tau) * norm.cdf(d1)


def test_one_decision_against_closed_forms(x64):
    """Short 100 calls, 60 shares held: delta hedging buys 100 N(d1) - 60 shares (scipy),
    a band of 5 shares trades to its nearest edge, costs are 10 bp of the traded value."""
    model = hj.BlackScholes(S0, 0.25, rate=0.03, div=0.01)
    book = hj.Book([hj.EuropeanCall(100.0, 0.5)], [-100.0])
    grid = hj.TimeGrid(0.5, 126)
    spot, t = 101.3, 0.1
    delta = -100.0 * _bs_delta(spot, 100.0, 0.5 - t, 0.25, 0.03, 0.01)
    r = rebalance(hj.DeltaHedge(), book, model, spot, t, 60.0, grid=grid,
                  costs=hj.Proportional(1e-3))
    assert r.step == 25 and r.units is None and r.state is None
    np.testing.assert_allclose(r.delta, delta, rtol=1e-12)
    np.testing.assert_allclose(r.target, -delta, rtol=1e-12)
    np.testing.assert_allclose(r.trade, -delta - 60.0, rtol=1e-12)
    np.testing.assert_allclose(r.cost, 1e-3 * abs(-delta - 60.0) * spot, rtol=1e-12)
    band = rebalance(hj.BandHedge(5.0), book, model, spot, t, [60.0, 70.0], grid=grid)
    np.testing.assert_allclose(band.target, [60.0, -delta + 5.0], rtol=1e-12)  # inside, above
    # several states at once: a vector of spots, one position
    many = rebalance(hj.DeltaHedge(), book, model, [90.0, 101.3, 110.0], t, 60.0, grid=grid)
    assert many.target.shape == (3,)
    np.testing.assert_allclose(many.target[1], r.target, rtol=1e-14)
    np.testing.assert_allclose(
        many.delta, -100.0 * _bs_delta(np.array([90.0, 101.3, 110.0]), 100.0, 0.4, 0.25,
                                       0.03, 0.01), rtol=1e-12)


def test_a_time_between_grid_times_uses_the_last_step(x64):
    """t = 0.1 on a grid of 63 steps over 0.25 years is step 25.2: DeltaHedge(every=5)
    sees step 25 (a rebalancing step), every=3 step 25 (not: it holds); the time to
    maturity is 0.25 - 0.1 exactly."""
    model, call, grid = hj.BlackScholes(S0, VOL), hj.EuropeanCall(100.0, 0.25), \
        hj.TimeGrid(0.25, 63)
    now = rebalance(hj.DeltaHedge(every=5), call, model, 101.3, 0.1, -0.4, grid=grid)
    hold = rebalance(hj.DeltaHedge(every=3), call, model, 101.3, 0.1, -0.4, grid=grid)
    assert now.step == hold.step == 25 and now.time == 0.1
    np.testing.assert_allclose(now.target, -_bs_delta(101.3, 100.0, 0.15, VOL), rtol=1e-12)
    assert float(hold.trade) == 0.0 and float(hold.target) == -0.4


def test_the_default_grid_is_daily_to_the_last_maturity(x64):
    call = hj.EuropeanCall(100.0, 0.5)
    r = rebalance(hj.DeltaHedge(), call, hj.BlackScholes(S0, VOL), 100.0, 10 / 252, 0.0)
    assert r.step == 10
    np.testing.assert_allclose(r.target, -_bs_delta(100.0, 100.0, 0.5 - 10 / 252, VOL),
                               rtol=1e-12)


# ------------------------------------------------------------------ validation


def test_rebalance_refuses_bad_inputs_by_name():
    model, call, grid = hj.BlackScholes(S0, VOL), hj.EuropeanCall(100.0, 0.25), GRID
    strategy = hj.DeltaHedge()
    bad = [
        (dict(spot=-5.0), "spot must be finite and > 0"),
        (dict(spot=[100.0, np.nan]), r"spot .*element \[1\]"),
        (dict(t=-0.1), r"t must be in \[0, 0.25\)"),
        (dict(t=0.25), "t must be"),
        (dict(t="now"), "t must be a real number"),
        (dict(position=np.inf), "position must be finite"),
        (dict(position=(1.0, 2.0)), "position must be the shares held"),
        (dict(variance=-0.01), "variance must be finite and >= 0"),
        (dict(spot=[100.0, 101.0], position=[1.0, 2.0, 3.0]), "broadcast"),
        (dict(state=(jnp.zeros(()),)), "state must be None for DeltaHedge"),
        (dict(path_state={"knocked": True}), "path_state is only for books"),
        (dict(option_price=3.0), "option_price is only for a strategy"),
    ]
    base = dict(spot=101.0, t=0.1, position=0.0)
    for change, message in bad:
        kwargs = {**base, **change}
        args = [kwargs.pop(k) for k in ("spot", "t", "position")]
        with pytest.raises(ValueError, match=message):
            rebalance(strategy, call, model, *args, grid=grid, **kwargs)
    with pytest.raises(ValueError, match="strategy must be an AbstractStrategy"):
        rebalance("delta", call, model, 100.0, 0.0, 0.0, grid=grid)
    with pytest.raises(ValueError, match="model must be an AbstractModel"):
        rebalance(strategy, call, None, 100.0, 0.0, 0.0, grid=grid)
    with pytest.raises(ValueError, match="book must be a Book"):
        rebalance(strategy, [call], model, 100.0, 0.0, 0.0, grid=grid)
    with pytest.raises(ValueError, match="variance must be given for a Heston"):
        rebalance(strategy, call, _heston_world(), 100.0, 0.1, 0.0, grid=grid)
    barrier = hj.Barrier(100.0, 90.0, 0.25)
    with pytest.raises(ValueError, match="path_state must be given after the book's start"):
        rebalance(strategy, barrier, model, 100.0, 0.1, 0.0, grid=grid)
    with pytest.raises(ValueError, match=r"unknown: \['hit'\]; missing: \['knocked'\]"):
        rebalance(strategy, barrier, model, 100.0, 0.1, 0.0, grid=grid,
                  path_state={"hit": True})
    with pytest.raises(ValueError, match="knocked'\\] must be a boolean"):
        rebalance(strategy, barrier, model, 100.0, 0.1, 0.0, grid=grid,
                  path_state={"knocked": 0.5})
    gamma_hedge = hj.DeltaGammaHedge(hj.EuropeanCall(100.0, 0.5))
    with pytest.raises(ValueError, match=r"position must be a tuple \(shares, option units\)"):
        rebalance(gamma_hedge, call, model, 100.0, 0.1, 0.0, grid=grid)
    policy = hj.NeuralHedge(jax.random.key(0), 4, 1, hidden_state=2)
    with pytest.raises(ValueError, match="state must have the structure"):
        rebalance(policy, call, model, 100.0, 0.1, 0.0, (np.zeros(2),), grid=grid)
    with pytest.warns(UserWarning, match="no state was given at step"):
        rebalance(policy, call, model, 100.0, 0.1, 0.0, grid=grid)


# ------------------------------------------------------------------ strategy files


def test_a_fitted_policy_round_trips_bit_for_bit(tmp_path):
    """A NeuralHedge trained by fit (a few adam steps), saved and loaded: same class,
    configuration and weights bit for bit, and the same decision from rebalance."""
    policy = hj.NeuralHedge(jax.random.key(0), 4, 1)
    model, call, grid = hj.BlackScholes(S0, VOL), hj.EuropeanCall(100.0, 0.25), \
        hj.TimeGrid(0.25, 5)
    fitted, _ = hj.fit(policy, hj.risk.mean_cost_variance(lam=1.0), model, call,
                       hj.Proportional(1e-3), grid, key=jax.random.key(1), steps=3,
                       n_paths=64, learning_rate=1e-2, progress=False)
    path = tmp_path / "fitted.eqx"
    save_strategy(path, fitted, metadata={"grid": [0.25, 5]})
    loaded, meta = load_strategy(path, with_metadata=True)
    assert type(loaded) is hj.NeuralHedge and meta == {"grid": [0.25, 5]}
    assert loaded.features == fitted.features and loaded.mlp.width_size == 4
    arrays = [jax.tree.leaves(eqx.filter(p, eqx.is_array)) for p in (loaded, fitted, policy)]
    for a, b in zip(arrays[0], arrays[1], strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(arrays[1][0], arrays[2][0])      # trained: the weights moved
    first = rebalance(fitted, call, model, 101.0, 0.0, 0.0, grid=grid)
    again = rebalance(loaded, call, model, 101.0, 0.0, 0.0, grid=grid)
    assert float(first.target) == float(again.target)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("strategy", [
    hj.DeltaHedge(every=3), hj.StaticHedge(), hj.BandHedge(0.05), hj.WhalleyWilmott(1.0, 0.7),
    hj.AsymmetricBand(0.1, 0.2),
    hj.MoveBased(0.02, hj.Limits(hj.BandHedge(0.1), max_position=2.0)),
    hj.ExecutionLag(hj.DeltaHedge(), steps=2),
    hj.DeltaGammaHedge(hj.EuropeanCall(100.0, 0.5), costs=hj.Spread(0.02)),
    hj.NeuralHedge(jax.random.key(0), 4, 1, hidden_state=2, features=(
        hj.features.log_moneyness(95.0), hj.features.sqrt_time_to_maturity,
        hj.features.position(), hj.features.delta(2.0), hj.features.realised_vol)),
], ids=lambda s: type(s).__name__)
def test_strategies_round_trip(tmp_path, strategy):
    path = tmp_path / "s.eqx"
    save_strategy(path, strategy)
    loaded = load_strategy(path)
    assert type(loaded) is type(strategy)
    assert jax.tree.structure(loaded) == jax.tree.structure(strategy)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(strategy), strict=True):
        np.testing.assert_array_equal(a, b)


def test_learned_band_and_listed_options_round_trip(tmp_path):
    """Static configuration holding arrays (a NeuralHedge's listed options and their costs)
    travels by value in the record; the MLP's activation by name."""
    policy = hj.NeuralHedge(jax.random.key(2), 4, 1, options=(
        hj.EuropeanCall(100.0, 0.5), hj.EuropeanPut(90.0, 0.5)),
        option_costs=(hj.Spread(0.02), None))
    for strategy in (policy, hj.LearnedBand(jax.random.key(0), asymmetric=True)):
        path = tmp_path / "s.eqx"
        save_strategy(path, strategy)
        loaded = load_strategy(path)
        assert loaded.option == strategy.option if isinstance(strategy, hj.NeuralHedge) \
            else loaded.asymmetric
        assert bool(jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)),
                                              loaded, strategy)))


def _custom_feature(obs, position):
    return 100.0 * obs.cost_rate


def test_strategy_file_errors(tmp_path):
    path = tmp_path / "s.eqx"
    with pytest.raises(ValueError, match="does not exist"):
        load_strategy(tmp_path / "missing.eqx")
    path.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not a readable hedgejax strategy file"):
        load_strategy(path)
    with pytest.raises(ValueError, match="strategy must be an AbstractStrategy"):
        save_strategy(path, "delta")
    with pytest.raises(ValueError, match="cannot be saved"):
        save_strategy(path, hj.NeuralHedge(jax.random.key(0), 4, 1, features=(
            hj.features.Feature(lambda obs, position: obs.spot / 100.0),)))
    with pytest.raises(ValueError, match="metadata must be JSON-serialisable"):
        save_strategy(path, hj.DeltaHedge(), metadata={"grid": object()})
    with pytest.raises(ValueError, match="is a folder"):
        save_strategy(tmp_path, hj.DeltaHedge())
    # a custom top-level feature is saved by name and found again once imported
    policy = hj.NeuralHedge(jax.random.key(0), 4, 1, features=(_custom_feature,))
    save_strategy(path, policy)
    assert load_strategy(path).features == (_custom_feature,)
    # a damaged record: the rebuilt strategy must match the saved fingerprint
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        state = data["state"]
    meta["fingerprint"] = "0" * 16
    np.savez(tmp_path / "bad.npz", meta=np.asarray(json.dumps(meta)), state=state)
    with pytest.raises(ValueError, match="fingerprint does not match"):
        load_strategy(tmp_path / "bad.npz")
    # a fit checkpoint is not a strategy file
    np.savez(tmp_path / "ckpt.npz", meta=np.asarray("{}"), step=np.asarray(3))
    with pytest.raises(ValueError, match="not a readable hedgejax strategy file"):
        load_strategy(tmp_path / "ckpt.npz")


def test_float64_file_needs_float64(tmp_path, x64):
    path = tmp_path / "band.eqx"
    save_strategy(path, hj.BandHedge(0.05))
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="saved in float64; enable float64 first"):
            load_strategy(path)
    finally:
        jax.config.update("jax_enable_x64", True)


# ------------------------------------------------------------------ the command line


BOOK_TOML = """
[model]
kind = "black-scholes"
vol = 0.25
rate = 0.03
div = 0.01

[grid]
maturity = 0.5
steps = 126

[costs]
proportional = 0.001

[[instruments]]
kind = "call"
strike = 100.0
maturity = 0.5
quantity = -100.0
"""


def _cli(argv, capsys):
    from hedgejax.cli import main

    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _cli_error(argv, capsys) -> str:
    from hedgejax.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hedgejax: error: "), err
    return lines[0]


def test_cli_rebalance_end_to_end(tmp_path, capsys):
    """A band saved to a file, applied to a call book from TOML: the target is the edge of
    the band around -delta (scipy's N(d1)), the cost 10 bp of the trade's value; JSON on
    stdout and in --out."""
    book = tmp_path / "book.toml"
    book.write_text(BOOK_TOML)
    strategy = tmp_path / "band.eqx"
    save_strategy(strategy, hj.BandHedge(5.0))
    out = tmp_path / "trade.json"
    args = ["rebalance", "--book", str(book), "--strategy", str(strategy), "--spot", "101.3",
            "--position", "70", "--time", "0.1", "--out", str(out)]
    code, table, _ = _cli(args, capsys)
    assert code == 0 and "target position (shares)" in table
    assert max(len(line) for line in table.splitlines()) <= 80
    written = json.loads(out.read_text())
    delta = -100.0 * _bs_delta(101.3, 100.0, 0.4, 0.25, 0.03, 0.01)
    results = written["results"]
    assert results["step"] == 25
    np.testing.assert_allclose(results["book_delta"], delta, rtol=1e-5)
    np.testing.assert_allclose(results["target"], -delta + 5.0, rtol=1e-5)
    np.testing.assert_allclose(results["estimated_cost"], 1e-3 * (70 + delta - 5.0) * 101.3,
                               rtol=1e-4)
    assert written["state"] is None
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o666 & ~_umask())
    previous = jax.config.jax_enable_x64
    try:
        code, text, _ = _cli(args[:-2] + ["--json", "--x64"], capsys)
    finally:
        jax.config.update("jax_enable_x64", previous)
    np.testing.assert_allclose(json.loads(text)["results"]["target"], -delta + 5.0,
                               rtol=1e-12)


def test_cli_rebalance_carries_a_strategy_state(tmp_path, capsys):
    """A stateful strategy (MoveBased) through --out and --state: the second call reads
    the spot of the last rebalance from the first call's file and holds (the spot moved
    less than 5%)."""
    book = tmp_path / "book.toml"
    book.write_text(BOOK_TOML)
    strategy = tmp_path / "move.eqx"
    save_strategy(strategy, hj.MoveBased(0.05))
    first = tmp_path / "first.json"
    base = ["rebalance", "--book", str(book), "--strategy", str(strategy)]
    _cli(base + ["--spot", "100", "--position", "0", "--time", "0", "--out", str(first)],
         capsys)
    state = json.loads(first.read_text())["state"]
    assert state == [100.0]                          # the spot of the last rebalance
    target = json.loads(first.read_text())["results"]["target"]
    code, text, _ = _cli(base + ["--spot", "103", "--position", str(target), "--time",
                                 str(5 / 252), "--state", str(first), "--json"], capsys)
    assert json.loads(text)["results"]["trade"] == 0.0


def test_cli_rebalance_refuses_bad_input_in_one_line(tmp_path, capsys):
    book = tmp_path / "book.toml"
    book.write_text(BOOK_TOML)
    base = ["rebalance", "--strategy", "delta", "--spot", "100", "--position", "0",
            "--time", "0.1"]
    assert "does not exist" in _cli_error(["rebalance", "--book", str(book), "--strategy",
                                           str(tmp_path / "nope.eqx"), "--spot", "100",
                                           "--position", "0", "--time", "0.1"], capsys)
    assert "No such file" in _cli_error(base + ["--book", str(tmp_path / "missing.toml")],
                                        capsys)
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nkind = ")
    assert "is not valid TOML" in _cli_error(base + ["--book", str(bad)], capsys)
    bad.write_text(BOOK_TOML.replace("strike = 100.0", "strik = 100.0"))
    assert "unknown key 'instruments[0].strik'" in _cli_error(base + ["--book", str(bad)],
                                                               capsys)
    bad.write_text(BOOK_TOML.replace("vol = 0.25", "vol = -0.25"))
    assert "[model] vol must be finite and > 0" in _cli_error(base + ["--book", str(bad)],
                                                              capsys)
    message = _cli_error(["rebalance", "--book", str(book), "--strategy", "delta", "--spot",
                          "-5", "--position", "0", "--time", "0.1"], capsys)
    assert "--spot must be > 0" in message
    message = _cli_error(["rebalance", "--book", str(book), "--strategy", "delta", "--spot",
                          "100", "--position", "0", "--time", "0.7"], capsys)
    assert "--time must be in [0, 0.5)" in message
    assert "required" in _cli_error(["rebalance", "--book", str(book)], capsys)


def test_a_saved_neural_policy_loads_in_another_process(tmp_path):
    """The file is self-contained: a policy saved here loads bit for bit in a fresh
    interpreter (its activation functions are recorded by name, not by address)."""
    import subprocess
    import sys

    policy = hj.NeuralHedge(jax.random.key(3), hidden=8, depth=1, hidden_state=2)
    path = tmp_path / "policy.eqx"
    hj.save_strategy(path, policy)
    code = ("import sys, numpy as np, jax, equinox as eqx, hedgejax as hj\n"
            "p = hj.load_strategy(sys.argv[1])\n"
            "print(float(sum(np.abs(np.asarray(x, np.float64)).sum()\n"
            "      for x in jax.tree.leaves(eqx.filter(p, eqx.is_array)))).hex())\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    here = float(sum(np.abs(np.asarray(x, np.float64)).sum()
                     for x in jax.tree.leaves(eqx.filter(policy, eqx.is_array))))
    assert out.stdout.strip() == here.hex()


@pytest.mark.parametrize("t", ["0.1", b"0.1"])
def test_rebalance_refuses_a_time_that_is_not_a_number(t):
    with pytest.raises(ValueError, match="t must be a real number"):
        hj.rebalance(hj.DeltaHedge(), hj.EuropeanCall(100.0, 0.25), hj.BlackScholes(100.0, 0.2),
                     spot=101.0, t=t, position=0.0, grid=hj.TimeGrid(0.25, 63))
