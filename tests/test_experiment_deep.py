"""The deep-hedging experiment: its run folder from the command line on a tiny config, and the
parts it is built from (the Select strategy, the forward start's features, the entropic risk
and its paired standard errors, the policy map) against direct computations in the test."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_run_folder
from scipy.stats import norm
from test_experiment_output_b import check_readable

import hedgejax as hj
from hedgejax import cli
from hedgejax.experiments import deep_hedging as dh
from hedgejax.experiments._framework import run_experiment

NAME = "deep-hedging"

TINY = """
paths = 400
heston = false
fit_steps = 2
fit_paths = 64
forward_fit_steps = 2
forward_fit_paths = 64
price_cost_rates = [0.002]
hidden = 4
depth = 1
hidden_state = 2
"""


def _perturbed(policy, key):
    """`policy` with its output layer moved off zero (no longer delta hedging / flat)."""
    layer = policy.mlp.layers[-1]
    w = 0.3 * jax.random.normal(key, layer.weight.shape, layer.weight.dtype)
    return eqx.tree_at(lambda p: (p.mlp.layers[-1].weight, p.mlp.layers[-1].bias), policy,
                       (w, jnp.full(layer.bias.shape, 0.05, layer.bias.dtype)))


@pytest.mark.slow  # ~a minute of compiling: five fits and three hedging loops
def test_deep_hedging_tiny_from_the_command_line(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    code = cli.main(["experiment", NAME, "--config", str(config), "--out",
                     str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code in (0, None)
    (folder,) = (tmp_path / "runs").glob(f"{NAME}-*")
    assert str(folder) in out.replace("\n", "")
    payload = check_run_folder(folder, NAME)
    check_readable(folder)      # human headers with units, a caption; fits 80 and 120 columns
    assert {p.stem for p in folder.glob("*.png")} == {
        "hedging_risk", "pnl_histograms", "indifference_prices", "no_trade_region",
        "forward_start"}

    # the table: (book, strategy) rows of the Black-Scholes world, then the forward start
    table = payload["table"]
    assert [(r["case"], r["strategy"]) for r in table] == (
        [(f"BS {b}", s) for b in ("call", "up-and-out")
         for s in ("unhedged", "delta", "Whalley-Wilmott", "learned")]
        + [("BS fwd start", s) for s in ("unhedged", "delta", "no delta",
                                         "no delta, recurrent", "strike feature")])
    assert list(table[0])[:6] == ["case", "strategy", "entropic", "entropic_se", "vs_delta",
                                  "vs_delta_se"]
    assert payload["display"] == ["case", "strategy", "entropic", "entropic_se", "vs_delta",
                                  "std_pnl", "mean_cost"]
    rows = {(r["case"], r["strategy"]): r for r in table}
    for case in ("BS call", "BS up-and-out", "BS fwd start"):
        delta = rows[case, "delta"]
        assert delta["vs_delta"] is None and delta["vs_delta_se"] is None
        for (c, s), r in rows.items():
            if c == case and s != "delta":
                # the paired difference is the difference of the two risks (hj.evaluate's,
                # float32) on the same paths
                assert r["vs_delta"] == pytest.approx(r["entropic"] - delta["entropic"],
                                                      abs=2e-4 * (1 + abs(r["entropic"])))
                assert r["vs_delta_se"] > 0
    # unhedged, a short at-the-money call is far riskier than delta hedged (15 against 0.5)
    assert rows["BS call", "unhedged"]["entropic"] > 5 * rows["BS call", "delta"]["entropic"]
    # two adam steps from delta hedging stay near it; two steps from holding nothing stay
    # near unhedged (the residual=False policies start flat)
    learned = rows["BS call", "learned"]
    assert abs(learned["vs_delta"]) < 0.1 * rows["BS call", "delta"]["entropic"]
    fwd_delta = rows["BS fwd start", "delta"]["entropic"]
    for s in ("no delta", "no delta, recurrent", "strike feature"):
        assert rows["BS fwd start", s]["entropic"] > 3 * fwd_delta

    # indifference prices: hj.indifference_price for the learned policy, the same formula
    # computed here on the same paths; above Black-Scholes with costs and daily hedging
    prices = payload["results"]["indifference"]
    assert prices["cost_rates"] == [0.002]
    assert prices["learned"]["price"][0] == pytest.approx(prices["learned_direct"][0],
                                                          rel=1e-4)
    assert prices["delta"]["price"][0] > prices["black_scholes"] + 0.1
    assert prices["unhedged"][0] > prices["delta"]["price"][0]
    maps = payload["results"]["no_trade_region"]
    assert set(maps) == {"call", "up-and-out"}
    assert all(m["day"] == 12 for m in maps.values())
    assert len(payload["results"]["training"]["forward start / no delta, recurrent"][
        "objective"]) == 2
    # findings are computed from the run: the table's numbers appear in them
    text = " ".join(payload["findings"])
    assert f"{rows['BS call', 'delta']['entropic']:.4f}" in text


def test_config_errors_name_the_key(tmp_path):
    for overrides, key in (({"barrier_kind": "up-and-in"}, "barrier_kind"),
                           ({"barrier": 95.0}, "barrier"),
                           ({"barrier_kind": "down-and-out"}, "barrier"),
                           ({"forward_start_day": 25}, "forward_start_day"),
                           ({"maturity": 0.01}, "maturity")):
        with pytest.raises(ValueError, match=f"config key '{key}'"):
            run_experiment(NAME, out=tmp_path, overrides={"paths": 200, **overrides},
                           progress=False, show=False)
    assert not list(tmp_path.glob(f"{NAME}-*"))


def _observation(n, step, spot, book=None, path=None, maturity=0.1, n_steps=10):
    """An observation of a short at-the-money call (strike 100, vol 0.2, r = 0) at `step`,
    its delta and gamma in closed form (Black-Scholes)."""
    t = step * maturity / n_steps
    tau = maturity - t
    sd = 0.2 * math.sqrt(tau)
    d1 = (jnp.log(spot / 100.0) + 0.5 * sd * sd) / sd
    return hj.Observation(step=jnp.asarray(step, jnp.int32), time=jnp.asarray(t),
                          time_to_maturity=jnp.asarray(tau), spot=spot,
                          delta=-jax.scipy.stats.norm.cdf(d1),
                          gamma=-jax.scipy.stats.norm.pdf(d1) / (spot * sd),
                          cost_rate=jnp.full((n,), 0.002), rate=jnp.asarray(0.0), book=book,
                          path=path)


@pytest.mark.slow  # compile-bound: the fast tier keeps the cheap checks
def test_select_decides_as_each_member_step_by_step():
    """Select(members, i).decide is members[i].decide, with every member's state carried
    (a recurrent NeuralHedge among them), over several steps of hand-built observations."""
    select = dh.select_class()
    k1, k2, k3 = jax.random.split(jax.random.key(5), 3)
    members = (hj.DeltaHedge(), hj.WhalleyWilmott(1.0),
               _perturbed(hj.NeuralHedge(k1, hidden=4, depth=1), k2),
               _perturbed(hj.NeuralHedge(k1, hidden=4, depth=1, hidden_state=3), k3))
    n = 16
    spots = 100.0 * jnp.exp(0.02 * jax.random.normal(jax.random.key(7), (4, n)))
    decide = eqx.filter_jit(lambda s, obs, position, state: s.decide(obs, position, state))
    for i, member in enumerate(members):
        strategy = select(members, i)
        position = jnp.zeros(n)
        state = strategy.init_state(position)
        own = member.init_state(position)
        for step in range(4):
            obs = _observation(n, step, spots[step])
            target, state = decide(strategy, obs, position, state)
            expected, own = decide(member, obs, position, own)
            np.testing.assert_array_equal(np.asarray(target), np.asarray(expected))
            # every member's state advances, whichever decides
            if own is not None:
                for a, b in zip(jax.tree.leaves(state[i]), jax.tree.leaves(own), strict=True):
                    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            position = target
    # the members are not all the same decision (else the test proves nothing)
    obs = _observation(n, 1, spots[1])
    outs = [np.asarray(m.decide(obs, spots[0] * 0 + 0.3, m.init_state(jnp.zeros(n)))[0])
            for m in members]
    assert all(np.max(np.abs(outs[0] - o)) > 1e-3 for o in outs[1:])
    with pytest.raises(TypeError, match="stateful"):
        select(members, 0)(obs, jnp.zeros(n))


@pytest.mark.slow  # compile-bound (~20 s): the 3.11 fast tier is at its budget
def test_select_in_hedge_is_its_member():
    """In the compiled loop too: the P&L of Select((delta, recurrent policy), 1) is that of
    the recurrent policy alone (which = 0 is checked step by step above)."""
    select = dh.select_class()
    k1, k2 = jax.random.split(jax.random.key(11))
    policy = _perturbed(hj.NeuralHedge(k1, hidden=4, depth=1, hidden_state=2), k2)
    model, call = hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.05)
    grid, costs, key = hj.TimeGrid(0.05, 5), hj.Proportional(0.002), jax.random.key(3)
    a = hj.hedge(model, call, select((hj.DeltaHedge(), policy), 1), costs, grid, 128, key)
    b = hj.hedge(model, call, policy, costs, grid, 128, key)
    np.testing.assert_array_equal(np.asarray(a.n_trades), np.asarray(b.n_trades))
    np.testing.assert_allclose(np.asarray(a.pnl), np.asarray(b.pnl), rtol=0, atol=1e-5)
    # and the policy is not delta hedging (else the test proves nothing)
    c = hj.hedge(model, call, select((hj.DeltaHedge(), policy), 0), costs, grid, 128, key)
    assert np.max(np.abs(np.asarray(c.pnl) - np.asarray(a.pnl))) > 1e-2


def test_forward_start_features_against_their_formulas():
    """log(S/S0)/(vol sqrt T), tau/T and log(K/S)/(vol sqrt T) with K the forward start's
    strike in the path state, on a hand-built observation."""
    maturity, vol, n = 0.1, 0.2, 5
    fwd = hj.ForwardStart(0.04, maturity)
    book = hj.Book([fwd], quantities=[-1.0])
    spot = jnp.asarray([90.0, 95.0, 100.0, 104.0, 111.0])
    strike = jnp.asarray([97.0, 100.0, 103.0, 99.0, 100.0])
    obs = _observation(n, 6, spot, book=book, path=({"strike": strike[None, :]},),
                       maturity=maturity)
    position = jnp.asarray([0.0, 0.1, 0.5, 0.9, 1.2])
    f = dh.forward_features(100.0, vol, maturity, contracts=2.0)
    scale = vol * math.sqrt(maturity)
    s, k, p = (np.asarray(x, dtype=float) for x in (spot, strike, position))
    np.testing.assert_allclose(np.asarray(f[0](obs, position)), np.log(s / 100.0) / scale,
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(f[1](obs, position)), np.full(n, 1 - 0.6),
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(f[2](obs, position)), p / 2.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(dh.strike_feature(vol, maturity)(obs, position)),
                               np.log(k / s) / scale, rtol=1e-4, atol=1e-6)
    # every one O(1) on this observation
    assert max(float(np.max(np.abs(np.asarray(g(obs, position))))) for g in f) < 2


def test_entropic_risk_and_paired_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(-0.3, 0.5, 200_000)
    a = 1.5
    # a normal sample: rho = -m + a s^2 / 2 (the exponential moment of N(m, s^2)), within
    # Monte Carlo error (4 standard errors by batch means)
    risk = float(dh._entropic_np(x, a))
    se = np.std(dh._batch_values(x, a), ddof=1) / math.sqrt(dh.BATCHES)
    assert abs(risk - (0.3 + a * 0.25 / 2)) < 4 * se
    # the library's entropic risk on the same sample
    assert risk == pytest.approx(float(hj.risk.entropic(jnp.asarray(x), a)), rel=1e-4)
    # cash invariance: a strategy that does c better on every path is c less risky, with no
    # error at all (the batches pair the same paths)
    diff, diff_se = dh._paired(x + 0.25, x, a)
    assert diff == pytest.approx(-0.25, abs=1e-9) and diff_se < 1e-9
    # independent samples: the paired error is about sqrt(2) x each one's
    y = rng.normal(-0.3, 0.5, x.size)
    _, se_xy = dh._paired(y, x, a)
    # (20 batch means: the estimate's own relative error is ~16%)
    assert 0.6 * math.sqrt(2) * se < se_xy < 1.5 * math.sqrt(2) * se


def test_policy_map_of_an_untrained_policy_is_delta_hedging():
    """The untrained residual policy trades exactly to -delta from every position: the map
    finds its rest at the Black-Scholes delta (closed form N(d1)) and the whole gap closed."""
    cfg = {"contracts": 2.0, "vol": 0.2, "strike": 100.0, "rate": 0.0}
    grid = hj.TimeGrid(0.1, 10)
    call = hj.EuropeanCall(100.0, 0.1)
    model, costs = hj.BlackScholes(100.0, 0.2), hj.Proportional(0.002)
    policy = hj.NeuralHedge(jax.random.key(0), hidden=4, depth=1, book_scale=2.0)
    m = dh._policy_map(cfg, policy, hj.WhalleyWilmott(1.0), model, costs, grid, 5, call,
                       False)
    s = m["spots"]
    tau = 0.05
    d1 = (np.log(s / 100.0) + 0.5 * 0.04 * tau) / (0.2 * math.sqrt(tau))
    np.testing.assert_allclose(m["delta_target"], 2.0 * norm.cdf(d1), atol=2e-5)
    expected = m["delta_target"][None, :] - m["positions"][:, None]
    np.testing.assert_allclose(m["trade"], expected, atol=2e-5)
    summary = m["summary"]
    assert summary["rest_position"] == pytest.approx(summary["delta_target"], abs=1e-4)
    assert summary["fraction_of_gap_closed"] == pytest.approx(1.0, abs=1e-4)
    assert summary["ww_half_width"] > 0
