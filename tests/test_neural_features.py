"""`hj.features` and `NeuralHedge` with features as values, a recurrent state and several
listed options.

What is asserted, each against a reference computed here (numpy on the observation's
arrays, a numpy MLP / GRU with the policy's weights, a replay of a recorded run):

- the default features are today's four (five) with the same values, and the default
  network has today's parameter shapes and initial weights;
- every public feature equals its formula on a hand-built observation (path features on a
  hand-built book and path state: the instrument chosen by default and by index);
- a custom feature (plain function, declared width, `Feature` wrapper) feeds the network;
- the untrained policy is exactly delta hedging (bit for bit for the policy's decision,
  any features, recurrent or not, one or several options; inside `hedge()` to float64
  rounding, 1e-10 on P&Ls of order 1, see the NeuralHedge docstring);
- the recurrent state is carried: it equals a numpy GRU of the features, a perturbed policy's
  decisions depend on the past, and a run of `hedge()` replays step by step;
- realised variance: NeuralHedge fills `obs.realised_variance` = sum of squared log returns /
  t from its own memory;
- several listed options: shapes, the residual parametrisation, the costs charged per
  option inside `hedge()` (from the recorded trades);
- every invalid input raises `ValueError` naming it.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj
from hedgejax import features as F
from hedgejax._strategies.base import Observation
from hedgejax._strategies.neural import NeuralHedge

KEY = jax.random.key(0)


def _obs(shape=(16,), seed=0, *, tau=0.2, t=0.3, step=3, variance=True, vega=True,
         book=None, path=None, options=0, spot=None):
    """A hand-built observation (numpy draws: no compiled random ops)."""
    rng = np.random.default_rng(seed)

    def f32(x):
        return jnp.asarray(x, jnp.float32)

    if spot is None:
        spot = f32(100.0 * np.exp(0.2 * rng.normal(size=shape)))
    extra = {}
    if options:
        k = shape + (options,)
        extra = dict(option_price=f32(5.0 + rng.random(k)), option_delta=f32(rng.random(k)),
                     option_gamma=f32(0.01 * rng.random(k)), option_vega=f32(rng.random(k)))
    return Observation(
        step=jnp.asarray(step), time=f32(t), time_to_maturity=f32(tau), spot=spot,
        delta=f32(-rng.random(shape)), gamma=f32(0.05 * rng.normal(size=shape)),
        cost_rate=f32(np.full(shape, 1e-3)), rate=f32(0.01),
        variance=f32(0.04 * np.exp(rng.normal(size=shape))) if variance else None,
        vega=f32(20.0 * rng.random(shape)) if vega else None,
        book=book, path=path, **extra)


def _perturbed(policy, seed, scale=0.5):
    """`policy` with every trainable leaf moved by scale x N(0, 1) noise (numpy draws)."""
    params, static = eqx.partition(policy, eqx.is_inexact_array)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda x: jnp.asarray(np.asarray(x) + scale * rng.normal(
        size=x.shape), x.dtype), params)
    return eqx.combine(params, static)


def _np_mlp(mlp, x):
    """numpy reference of the tanh MLP on rows x (N, in)."""
    x = np.asarray(x, np.float64)
    for layer in mlp.layers[:-1]:
        x = np.tanh(x @ np.asarray(layer.weight, np.float64).T + np.asarray(layer.bias))
    last = mlp.layers[-1]
    return x @ np.asarray(last.weight, np.float64).T + np.asarray(last.bias)


def _np_gru(cell, x, h):
    """numpy reference of a GRU cell (Cho et al. 2014, equinox's layout) on rows."""
    def sig(z):
        return 1.0 / (1.0 + np.exp(-z))
    w_ih, w_hh = np.asarray(cell.weight_ih, np.float64), np.asarray(cell.weight_hh, np.float64)
    b, b_n = np.asarray(cell.bias, np.float64), np.asarray(cell.bias_n, np.float64)
    n = cell.hidden_size
    gi, gh = x @ w_ih.T + b, h @ w_hh.T
    r = sig(gi[:, :n] + gh[:, :n])
    z = sig(gi[:, n:2 * n] + gh[:, n:2 * n])
    c = np.tanh(gi[:, 2 * n:] + r * (gh[:, 2 * n:] + b_n))
    return c + z * (h - c)


# ---------------------------------------------------------------- default = today's policy

@pytest.mark.parametrize("variance", [False, True])
def test_default_features_and_weights_are_todays(variance):
    policy = NeuralHedge(KEY, hidden=4, depth=1, reference=95.0, book_scale=2.0,
                         variance_feature=variance)
    obs = _obs((2, 64))
    position = jnp.asarray(3.0 * np.random.default_rng(5).normal(size=(2, 64)), jnp.float32)
    s, tau = np.asarray(obs.spot, np.float64), float(obs.time_to_maturity)
    columns = [np.log(s / 95.0), np.full(s.shape, np.sqrt(tau)),
               np.asarray(position) / 2.0, np.asarray(obs.delta) / 2.0]
    if variance:
        columns.append(np.sqrt(np.asarray(obs.variance)))
    got = np.asarray(policy.inputs(obs, position))
    np.testing.assert_allclose(got, np.stack(columns, -1), rtol=1e-6, atol=1e-7)
    # bit for bit the expressions NeuralHedge.features() evaluated before features were
    # values (git history of hedgejax/_strategies/neural.py)
    f32 = jnp.float32
    today = [jnp.log(obs.spot / jnp.asarray(95.0, f32)),
             jnp.broadcast_to(jnp.sqrt(jnp.asarray(obs.time_to_maturity, f32)), (2, 64)),
             position.astype(f32) / jnp.asarray(2.0, f32), obs.delta / jnp.asarray(2.0, f32)]
    if variance:
        today.append(jnp.sqrt(obs.variance.astype(f32)))
    np.testing.assert_array_equal(got, np.asarray(jnp.stack(today, axis=-1)))
    # today's network: eqx.nn.MLP(n_features, 1, hidden, depth, tanh) from the same key,
    # output layer zeroed; nothing else trainable
    today = eqx.nn.MLP(5 if variance else 4, 1, 4, 1, activation=jnp.tanh, key=KEY)
    ours = jax.tree.leaves(eqx.filter(policy, eqx.is_inexact_array))
    theirs = jax.tree.leaves(eqx.filter(today, eqx.is_inexact_array))
    assert [x.shape for x in ours] == [x.shape for x in theirs]
    for a, b in zip(ours[:-2], theirs[:-2], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.any(np.asarray(ours[-2])) and not np.any(np.asarray(ours[-1]))
    assert policy.option is None and policy.option_costs is None
    assert policy.init_state(position) is None


# ---------------------------------------------------------------- market features

def test_market_features_against_their_formulas():
    obs = _obs((32,), seed=1)
    position = jnp.asarray(2.0 * np.random.default_rng(2).normal(size=32), jnp.float32)
    s, d, g = np.asarray(obs.spot), np.asarray(obs.delta), np.asarray(obs.gamma)
    cases = [
        (F.log_moneyness(90.0), np.log(s / 90.0)),
        (F.time_to_maturity, np.full(32, 0.2)),
        (F.sqrt_time_to_maturity, np.full(32, np.sqrt(0.2))),
        (F.position(4.0), np.asarray(position) / 4.0),
        (F.delta(2.0), d / 2.0),
        (F.gamma(3.0), np.arcsinh(g * s / 3.0)),
        (F.vega(2.0), np.asarray(obs.vega) / (s * 2.0)),
        (F.volatility, np.sqrt(np.asarray(obs.variance))),
        (F.constant(0.25), np.full(32, 0.25)),
    ]
    for feature, expected in cases:
        np.testing.assert_allclose(np.asarray(feature(obs, position)), expected, rtol=2e-6,
                                   atol=1e-6, err_msg=repr(feature))
    # a position with listed options: `position` reads the shares, option_units the units
    units = jnp.asarray(np.random.default_rng(3).normal(size=(32, 2)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(F.position(1.0)(obs, (position, units))),
                                  np.asarray(position))
    np.testing.assert_allclose(np.asarray(F.option_units(2, 0.5)(obs, (position, units))),
                               2.0 * np.asarray(units), rtol=1e-7)
    rv_obs = eqx.tree_at(lambda o: o.realised_variance, obs, jnp.full(32, 0.09),
                         is_leaf=lambda x: x is None)
    np.testing.assert_allclose(np.asarray(F.realised_vol(rv_obs, position)), 0.3, rtol=1e-6)
    # the same feature twice is equal and hashes alike (no recompilation)
    assert F.log_moneyness(90.0) == F.log_moneyness(90.0)
    assert hash(F.delta(2.0)) == hash(F.delta(2.0)) and F.delta(2.0) != F.delta(3.0)
    assert repr(F.log_moneyness(90.0)) == "log_moneyness(reference=90.0)"


def test_market_features_refuse_what_the_observation_lacks():
    obs = _obs((8,), variance=False, vega=False)
    zeros = jnp.zeros(8)
    with pytest.raises(ValueError, match="volatility.*variance"):
        F.volatility(obs, zeros)
    with pytest.raises(ValueError, match="vega"):
        F.vega()(obs, zeros)
    with pytest.raises(ValueError, match="realised_variance"):
        F.realised_vol(obs, zeros)
    with pytest.raises(ValueError, match="option_units"):
        F.option_units(2)(obs, zeros)
    for make, name in [(lambda: F.log_moneyness(0.0), "reference"),
                       (lambda: F.position(-1.0), "scale"), (lambda: F.delta(None), "scale"),
                       (lambda: F.option_units(0), "count"),
                       (lambda: F.running_max(instrument=-1), "instrument"),
                       (lambda: F.running_min(relative_to="start"), "relative_to"),
                       (lambda: F.barrier_distance(0.0), "vol"),
                       (lambda: F.constant(float("nan")), "value"),
                       (lambda: F.barrier_distance(0.2, cap=0.0), "cap"),
                       (lambda: F.Feature(3.0), "fn"),
                       (lambda: F.Feature(F.time_to_maturity, width=0), "width")]:
        with pytest.raises(ValueError, match=name):
            make()


# ---------------------------------------------------------------- path features

@functools.cache
def _path_book():
    return hj.Book([
        hj.EuropeanCall(100.0, 0.5),                              # 0
        hj.Lookback(0.5, option="put"),                           # 1 floating put: max
        hj.Lookback(0.5, strike=105.0, option="call"),            # 2 fixed call: max
        hj.Lookback(0.5, option="call"),                          # 3 floating call: min
        hj.Barrier(100.0, 90.0, 0.5, kind="down-and-out"),        # 4
        hj.OneTouch(120.0, 0.5),                                  # 5
        hj.Asian(100.0, 0.5, fixings=5),                          # 6 arithmetic
        hj.Asian(95.0, 0.5, average="geometric", fixings=10),     # 7
        hj.ForwardStart(0.2, 0.5, moneyness=1.1),                 # 8
        hj.Barrier(100.0, 110.0, 0.5, kind="up-and-out"),         # 9
        hj.Lookback(0.5, option="put"),                           # 10, with 1 in a group
        hj.Lookback(0.5, strike=95.0, option="put"),              # 11 fixed put: min
    ])


def _path_state(book, log_s, seed):
    """A hand-made path state for every group (random but consistent), shape (m, n)."""
    rng = np.random.default_rng(seed)
    n = log_s.size
    path = []
    for group in book.groups:
        m = group.maturity.shape[0]
        noise = np.abs(rng.normal(0.0, 0.1, (m, n)))
        if isinstance(group, hj.Lookback):
            state = {"extreme": log_s - noise if group.uses_min else log_s + noise}
        elif isinstance(group, hj.Barrier):
            state = {"knocked": rng.random((m, n)) < 0.5}
        elif isinstance(group, hj.OneTouch):
            state = {"down": rng.random((m, n)) < 0.5, "touched": rng.random((m, n)) < 0.3,
                     "hit_time": np.full((m, n), 0.5)}
        elif isinstance(group, hj.Asian):
            done = 2.0 if group.fixings == 5 else 5.0     # dates at or before t = 0.25
            fixing = log_s + noise if group.geometric else np.exp(log_s + noise)
            state = {"total": done * fixing}
        elif isinstance(group, hj.ForwardStart):
            state = {"strike": np.exp(log_s + noise)}
        else:
            state = None
        path.append(None if state is None else
                    {k: jnp.asarray(v, jnp.bool_ if v.dtype == bool else jnp.float32)
                     for k, v in state.items()})
    return tuple(path)


def _group_of(book, i):
    for g, idx in enumerate(book.positions):
        if i in idx:
            return g, idx.index(i)
    raise AssertionError(i)


def test_path_features_against_the_path_state():
    book = _path_book()
    obs = _obs((24,), seed=4, t=0.25)
    s = np.asarray(obs.spot, np.float64)
    path = _path_state(book, np.log(s), seed=5)
    obs = eqx.tree_at(lambda o: (o.book, o.path), obs, (book, path),
                      is_leaf=lambda x: x is None)

    def state(i, name):
        g, j = _group_of(book, i)
        return np.asarray(path[g][name][j], np.float64)

    root = 0.2 * np.sqrt(0.5 - 0.25)
    down = state(5, "down")
    cases = [
        (F.running_max(), state(1, "extreme") - np.log(s)),       # first max tracker
        (F.running_max(10), state(10, "extreme") - np.log(s)),    # second of its group
        (F.running_max(relative_to="strike"), state(2, "extreme") - np.log(105.0)),
        (F.running_min(), state(3, "extreme") - np.log(s)),
        (F.running_min(relative_to="strike"), state(11, "extreme") - np.log(95.0)),
        (F.barrier_distance(0.2), np.clip(np.log(s / 90.0) / root, -5, 5)),
        (F.barrier_distance(0.2, 9), np.clip(np.log(110.0 / s) / root, -5, 5)),
        (F.barrier_distance(0.2, 5, cap=3.0),
         np.clip(np.where(down, np.log(s / 120.0), np.log(120.0 / s)) / root, -3, 3)),
        (F.knocked(), state(4, "knocked")),
        (F.knocked(5), state(5, "touched")),
        (F.average(), np.stack([np.log(state(6, "total") / 2.0 / s), np.full(24, 0.4)], -1)),
        (F.average(7, relative_to="strike"),
         np.stack([state(7, "total") / 5.0 - np.log(95.0), np.full(24, 0.5)], -1)),
        (F.forward_strike(), np.log(state(8, "strike") / s)),
    ]
    for feature, expected in cases:
        value = np.asarray(feature(obs, jnp.zeros(24)))
        assert value.shape == expected.shape, feature
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5, err_msg=repr(feature))
    # before the forward start's date (0.2) the strike is not fixed: log(moneyness)
    early = eqx.tree_at(lambda o: o.time, obs, jnp.asarray(0.1, jnp.float32))
    np.testing.assert_allclose(np.asarray(F.forward_strike()(early, jnp.zeros(24))),
                               np.full(24, np.log(1.1)), rtol=1e-6)


def test_path_features_refuse_missing_state_by_name():
    book = _path_book()
    obs = _obs((8,), t=0.25)
    with pytest.raises(ValueError, match="running_max.*obs.path"):
        F.running_max()(obs, jnp.zeros(8))
    path = _path_state(book, np.log(np.asarray(obs.spot, np.float64)), seed=1)
    full = eqx.tree_at(lambda o: (o.book, o.path), obs, (book, path),
                       is_leaf=lambda x: x is None)
    with pytest.raises(ValueError, match="instrument 0 is a EuropeanCall"):
        F.knocked(0)(full, jnp.zeros(8))
    with pytest.raises(ValueError, match=r"instrument must be an index in \[0, 11\]"):
        F.average(12)(full, jnp.zeros(8))
    with pytest.raises(ValueError, match="fixed strike"):   # a floating lookback
        F.running_max(1, relative_to="strike")(full, jnp.zeros(8))
    calls = hj.Book([hj.EuropeanCall(100.0, 0.5), hj.Lookback(0.5)])
    small = eqx.tree_at(lambda o: (o.book, o.path), obs,
                        (calls, _path_state(calls, np.log(np.asarray(obs.spot)), 2)),
                        is_leaf=lambda x: x is None)
    with pytest.raises(ValueError, match="needs an Asian; the book holds EuropeanCall, "
                                         "Lookback"):
        F.average()(small, jnp.zeros(8))


# ---------------------------------------------------------------- custom features

def test_custom_features_feed_the_network():
    def squared(obs, position):                   # a plain function, one column
        return jnp.log(obs.spot / 100.0) ** 2

    def pair(obs, position):                      # two columns, declared
        return jnp.stack([obs.gamma, obs.cost_rate], -1)
    pair.width = 2

    def constant(obs, position):                  # a scalar is broadcast to every path
        return 0.5

    wrapped = F.Feature(lambda obs, position, a: a * obs.spot, params=(("a", 0.01),))
    feats = (pair, constant, wrapped)
    policy = _perturbed(NeuralHedge(KEY, hidden=4, depth=1, features=feats, book_scale=2.0),
                        seed=1)
    obs = _obs((40,), seed=6)
    s = np.asarray(obs.spot, np.float64)
    x = np.stack([np.asarray(obs.gamma), np.asarray(obs.cost_rate), np.full(40, 0.5),
                  0.01 * s], -1)
    np.testing.assert_allclose(np.asarray(policy.inputs(obs, jnp.zeros(40))), x, rtol=1e-5,
                               atol=1e-6)
    expected = -np.asarray(obs.delta) + 2.0 * _np_mlp(policy.mlp, x)[:, 0]
    got = policy(obs, jnp.zeros(40))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
    assert np.asarray(squared(obs, None)).shape == (40,)
    # a function that returns another width than it declares is named
    def wrong(obs, position):
        return jnp.stack([obs.spot] * 3, -1)
    with pytest.raises(ValueError, match=r"features\[1\].*shape \(40, 3\)"):
        NeuralHedge(KEY, 4, 1, features=(squared, wrong, constant))(obs, jnp.zeros(40))


# ---------------------------------------------------------------- untrained == delta

def test_untrained_policy_is_delta_hedging_bit_for_bit():
    # paths laid out as hedge() lays them (rows of 64), any features, recurrent or not,
    # eagerly and compiled: the decision is -delta exactly, the state moving underneath
    book = _path_book()
    shape = (2, 64)
    obs = _obs(shape, seed=7, t=0.25, options=2)
    path = _path_state(book, np.log(np.asarray(obs.spot, np.float64)).reshape(-1), 3)
    path = jax.tree.map(lambda x: x.reshape(x.shape[:1] + shape), path)
    obs = eqx.tree_at(lambda o: (o.book, o.path), obs, (book, path),
                      is_leaf=lambda x: x is None)
    position = jnp.asarray(3.0 * np.random.default_rng(8).normal(size=shape), jnp.float32)
    minus_delta = -np.asarray(obs.delta)
    np.testing.assert_array_equal(np.asarray(NeuralHedge(KEY, hidden=4, depth=1)(obs, position)),
                                  minus_delta)
    feats = (F.barrier_distance(0.2), F.average(), F.realised_vol)    # 4 columns
    policy = NeuralHedge(KEY, hidden=4, depth=1, hidden_state=2, features=feats)
    decide = eqx.filter_jit(lambda p, o, x, s: p.decide(o, x, s))
    state = policy.init_state(position)
    for i in range(2):
        target, new = decide(policy, obs, position, state)
        np.testing.assert_array_equal(np.asarray(target), minus_delta)
        assert i or not all(np.array_equal(a, b) for a, b in zip(   # the state moved
            jax.tree.leaves(state), jax.tree.leaves(new), strict=True))
        state = new
    # residual=False: the whole hedge is the network's output, 0 untrained
    plain = NeuralHedge(KEY, hidden=4, depth=1, residual=False)
    np.testing.assert_array_equal(np.asarray(plain(obs, position)), np.zeros(shape))
    # two listed options: units 0, shares -delta
    opts = (hj.EuropeanCall(100.0, 0.5), hj.EuropeanPut(95.0, 0.5))
    shares, units = NeuralHedge(KEY, hidden=4, depth=1, options=opts)(
        obs, (position, jnp.ones(shape + (2,))))
    np.testing.assert_array_equal(np.asarray(shares), minus_delta)
    np.testing.assert_array_equal(np.asarray(units), np.zeros(shape + (2,)))


# ---------------------------------------------------------------- recurrence

def test_recurrent_state_is_a_gru_of_the_features_and_carries_the_past():
    policy = _perturbed(NeuralHedge(KEY, hidden=4, depth=1, hidden_state=2), seed=2)
    memoryless = _perturbed(NeuralHedge(KEY, hidden=4, depth=1), seed=2)
    n, steps = 12, 4
    spots = 100.0 * np.exp(np.cumsum(0.05 * np.random.default_rng(0).normal(size=(steps, n)),
                                     0))
    base = [_obs((n,), seed=10 + i, step=i, t=0.05 * i, tau=0.2 - 0.05 * i)
            for i in range(steps)]

    def observations(spots):
        return [eqx.tree_at(lambda o: o.spot, o, jnp.asarray(s, jnp.float32))
                for o, s in zip(base, spots, strict=True)]

    decide = eqx.filter_jit(lambda p, o, x, s: p.decide(o, x, s))

    def run(p, spots, feed_back=True):
        position = jnp.zeros(n)
        state = p.init_state(position)
        targets, states = [], []
        for obs in observations(spots):
            target, state = decide(p, obs, position, state)
            position = target if feed_back else position
            targets.append(np.asarray(target))
            states.append(state)
        return targets, states

    targets, states = run(policy, spots)
    # numpy reference: h_0 = 0; at each step the MLP reads (features, h), then h <- GRU
    h = np.zeros((n, 2))
    position = np.zeros(n)
    for i, obs in enumerate(observations(spots)):
        x = np.asarray(policy.inputs(obs, jnp.asarray(position, jnp.float32)), np.float64)
        out = _np_mlp(policy.mlp, np.concatenate([x, h], -1))[:, 0]
        position = -np.asarray(obs.delta) + out
        np.testing.assert_allclose(targets[i], position, rtol=2e-5, atol=2e-5)
        h = _np_gru(policy.cell, x, h)
        np.testing.assert_allclose(np.asarray(states[i][0]), h, rtol=2e-5, atol=2e-5)
    # the past matters only through the state: with the same position fed at every step,
    # another first spot changes the recurrent decision at the last step (same observation
    # there), not the memoryless one's
    other = spots.copy()
    other[0] *= 1.1
    last = run(policy, spots, False)[0][-1]
    assert np.max(np.abs(run(policy, other, False)[0][-1] - last)) > 1e-4   # rounding: 1e-6
    np.testing.assert_array_equal(run(memoryless, other, False)[0][-1],
                                  run(memoryless, spots, False)[0][-1])
    with pytest.raises(TypeError, match="decide"):
        policy(base[0], jnp.zeros(n))


def test_realised_variance_is_tracked_from_the_policys_memory():
    # depth 0, weight 1, bias 0, residual=False: the decision is the feature itself
    policy = NeuralHedge(KEY, depth=0, features=(F.realised_vol,), residual=False)
    policy = eqx.tree_at(lambda p: p.mlp.layers[0].weight, policy, jnp.ones((1, 1)))
    assert policy.tracks_realised_variance and policy.cell is None
    n, steps, dt = 10, 5, 0.02
    log_s = np.log(100.0) + np.cumsum(
        np.r_[np.zeros((1, n)), 0.03 * np.random.default_rng(1).normal(size=(steps - 1, n))], 0)
    position = jnp.zeros(n)
    state = policy.init_state(position)
    for i in range(steps):
        obs = _obs((n,), step=i, t=dt * i, spot=jnp.asarray(np.exp(log_s[i]), jnp.float32))
        position, state = policy.decide(obs, position, state)
        expected = (0.0 if i == 0 else
                    np.sqrt(np.sum(np.diff(log_s[:i + 1], axis=0) ** 2, 0) / (dt * i)))
        np.testing.assert_allclose(np.asarray(position), expected, rtol=2e-4, atol=1e-6)


# ---------------------------------------------------------------- several listed options

def test_several_options_shapes_and_residual_positions():
    opts = (hj.EuropeanCall(100.0, 0.5), hj.EuropeanPut(95.0, 0.5))
    costs = (hj.Spread(0.02), None)
    policy = _perturbed(NeuralHedge(KEY, hidden=4, depth=1, options=opts, option_costs=costs,
                                    book_scale=3.0), seed=4)
    assert policy.option == opts and policy.option_costs == costs
    assert policy.mlp.layers[-1].weight.shape == (3, 4)
    # configuration, not parameters: fit trains the network only
    assert len(jax.tree.leaves(eqx.filter(policy, eqx.is_inexact_array))) == 4
    obs = _obs((20,), seed=9, options=2)
    held = (jnp.ones(20), 0.5 * jnp.ones((20, 2)))
    shares, units = policy(obs, held)
    assert shares.shape == (20,) and units.shape == (20, 2)
    x = np.asarray(policy.inputs(obs, held), np.float64)
    assert x.shape == (20, 4 + 2)       # today's four and the units held
    np.testing.assert_allclose(x[:, 4:], 0.5 / 3.0, rtol=1e-6)
    out = 3.0 * _np_mlp(policy.mlp, x)
    exposure = np.asarray(obs.delta) + np.sum(out[:, 1:] * np.asarray(obs.option_delta), -1)
    np.testing.assert_allclose(np.asarray(units), out[:, 1:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(shares), -exposure + out[:, 0], rtol=1e-5, atol=1e-5)
    plain = _perturbed(NeuralHedge(KEY, hidden=4, depth=1, options=opts, residual=False), 4)
    np.testing.assert_allclose(np.asarray(plain(obs, held)[0]),
                               _np_mlp(plain.mlp, np.asarray(plain.inputs(obs, held)))[:, 0],
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs, match", [
    (dict(features=()), "features must be None or a non-empty tuple"),
    (dict(features=F.delta()), "features must be None or a non-empty tuple"),
    (dict(features=(F.delta(), 3.0)), r"features\[1\] must be a function"),
    (dict(features=(F.Feature.__call__,)), r"features\[0\] must be a function f\(obs, pos"),
    (dict(features=(F.delta(),), variance_feature=True), "variance_feature"),
    (dict(hidden_state=-1), r"hidden_state must be an integer >= 0"),
    (dict(hidden_state=2.0), "hidden_state"),
    (dict(hidden_state=5000), r"hidden_state must be an integer in \[0, 4096\]"),
    (dict(recurrent="yes"), "recurrent must be True or False"),
    (dict(residual=None), "residual must be True or False"),
    (dict(options=(hj.EuropeanCall(100.0, 1.0),), option_costs=(None, None)),
     "option_costs must be None or a tuple of 1 costs"),
    (dict(options=(hj.EuropeanCall(100.0, 1.0),), option_costs=("spread",)),
     r"option_costs\[0\] must be an AbstractCost"),
    (dict(option_costs=(hj.Spread(0.01),)), "option_costs must be None when no options"),
    (dict(options=(hj.Barrier(100.0, 90.0, 1.0),)), r"options\[0\] must be a European"),
    (dict(options=(hj.EuropeanCall(100.0, 1.0), "put")), r"options\[1\] must be an instrument"),
    (dict(options="call"), "options must be a tuple"),
])
def test_invalid_arguments_are_named(kwargs, match):
    if match is None:
        NeuralHedge(KEY, 4, 1, **kwargs)
        return
    with pytest.raises(ValueError, match=match):
        NeuralHedge(KEY, 4, 1, **kwargs)


def test_feature_width_attribute_is_checked():
    def f(obs, position):
        return obs.spot
    f.width = 0
    with pytest.raises(ValueError, match=r"features\[0\].width must be an integer >= 1"):
        NeuralHedge(KEY, 4, 1, features=(f,))


# ---------------------------------------------------------------- inside hedge()

def test_recurrent_policy_with_options_inside_hedge_replays_and_pays_per_option():
    # A perturbed recurrent policy trading two listed options, each with its own costs. The
    # recorded run is replayed by calling decide() on observations rebuilt from the trace
    # (residual=False: the decision needs no option Greeks): hedge() carries the state as
    # the replay does, and charges each option's own costs on its own trades.
    model = hj.BlackScholes(100.0, 0.2)          # rate 0: costs need no accrual
    grid = hj.TimeGrid(0.25, 5)
    opts = (hj.EuropeanCall(100.0, 0.5), hj.EuropeanPut(95.0, 0.5))
    policy = _perturbed(NeuralHedge(KEY, hidden=4, depth=1, hidden_state=2, options=opts,
                                    option_costs=(hj.Spread(0.03), hj.Spread(0.05)),
                                    residual=False, features=F.default_features()),
                        seed=6, scale=0.5)
    res = hj.hedge(model, hj.EuropeanCall(100.0, 0.25), policy, None, grid, 64, KEY, record=6)
    tr = res.trace
    units = np.asarray(tr.option_units)        # (6, steps, 2)
    assert units.shape == (6, 5, 2) and np.all(np.abs(units).max((0, 1)) > 1e-3)

    decide = eqx.filter_jit(lambda p, o, x, s: p.decide(o, x, s))

    def replay(carry_state):
        position = (jnp.zeros(6), jnp.zeros((6, 2)))
        state = policy.init_state(position)
        shares, held = [], []
        for i in range(grid.n_steps):
            t = float(tr.time[i])
            obs = _obs((6,), step=i, t=t, tau=0.25 - t, spot=tr.spot[:, i], options=2)
            obs = eqx.tree_at(lambda o: o.delta, obs, tr.delta[:, i])
            if not carry_state:
                state = policy.init_state(position)
            position, state = decide(policy, obs, position, state)
            shares.append(np.asarray(position[0]))
            held.append(np.asarray(position[1]))
        return np.stack(shares, 1), np.stack(held, 1)

    shares, held = replay(True)
    np.testing.assert_allclose(np.asarray(tr.position), shares, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(units, held, rtol=1e-4, atol=1e-5)
    assert np.max(np.abs(units - replay(False)[1])) > 1e-3      # the state matters
    trades = np.diff(units, axis=1, prepend=0.0)
    np.testing.assert_allclose(np.asarray(tr.cost),
                               0.03 * np.abs(trades[..., 0]) + 0.05 * np.abs(trades[..., 1]),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(res.cost[:6]), np.asarray(tr.cost).sum(1),
                               rtol=1e-5)     # no unwind by default


@pytest.mark.slow
def test_untrained_recurrent_path_policy_inside_hedge_is_delta(x64):
    model = hj.BlackScholes(100.0, 0.2, rate=0.01)
    book = hj.Book([hj.Barrier(100.0, 85.0, 0.25), hj.Lookback(0.25, option="put")], [1.0, 0.5])
    grid = hj.TimeGrid(0.25, 8)
    feats = (F.log_moneyness(100.0), F.sqrt_time_to_maturity, F.position(), F.delta(),
             F.barrier_distance(0.2), F.knocked(), F.running_max(), F.realised_vol)
    policy = NeuralHedge(KEY, hidden=4, depth=1, features=feats, hidden_state=2)
    res = hj.hedge(model, book, policy, hj.Proportional(1e-3), grid, 128, KEY)
    delta = hj.hedge(model, book, hj.DeltaHedge(), hj.Proportional(1e-3), grid, 128, KEY)
    np.testing.assert_allclose(np.asarray(res.pnl), np.asarray(delta.pnl), rtol=0, atol=1e-10)
    np.testing.assert_array_equal(np.asarray(res.n_trades), np.asarray(delta.n_trades))


@pytest.mark.slow
def test_fit_trains_the_network_not_the_listed_options():
    # fit() differentiates every inexact-array leaf: the network's and the GRU's weights;
    # the listed options and their costs are configuration and stay as given
    opts = (hj.EuropeanCall(100.0, 0.5),)
    policy = NeuralHedge(KEY, hidden=4, depth=1, hidden_state=2, options=opts,
                         option_costs=(hj.Spread(0.01),))
    fitted, history = hj.fit(policy, lambda r: hj.risk.entropic(r.pnl, 1.0),
                             hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25),
                             hj.Proportional(1e-3), hj.TimeGrid(0.25, 5), key=KEY, steps=3,
                             n_paths=256, progress=False)
    assert np.all(np.isfinite(history.objective))
    assert fitted.option == opts and fitted.option_costs == policy.option_costs
    moved = [not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(eqx.filter(policy, eqx.is_inexact_array)),
        jax.tree.leaves(eqx.filter(fitted, eqx.is_inexact_array)), strict=True)]
    assert len(moved) == 8 and all(moved[2:4])    # MLP (4) then GRU (4): the output layer moved


@pytest.mark.parametrize("factory", [F.delta, F.log_moneyness, F.position, F.running_max])
def test_an_uncalled_feature_factory_is_refused_at_construction(factory):
    with pytest.raises(ValueError, match=r"features\[1\] must be a function f\(obs, position\)"):
        hj.NeuralHedge(jax.random.key(0), features=(F.time_to_maturity, factory))
