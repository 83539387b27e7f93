"""Parameter checks hold for values that arrive traced (jax.jit, jax.vmap, jax.grad) and for
values put in place by `eqx.tree_at`, which skips the constructor (issue 11, part 1).

Every constructor parameter with a range is taken out of it, through every public
computation that consumes it, and must raise naming `Class.parameter` and the range.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj
from hedgejax._pricing.registry import has_pricer

CALL = hj.EuropeanCall(100.0, 1.0)
BS = hj.BlackScholes(100.0, 0.2, 0.01, drift=0.05)
HESTON = hj.Heston(100.0, 0.04, 1.5, 0.04, 0.3, -0.7)
MERTON = hj.Merton(100.0, 0.2, 1.0, -0.1, 0.15, drift=0.05)
GRID = hj.TimeGrid(1.0, 4)
KEY = jax.random.key(0)
HISTORICAL = hj.HistoricalPaths(np.stack([np.linspace(90.0, 110.0, 30),
                                          np.linspace(110.0, 90.0, 30)]))


def _model_use(model):
    """Price (where the model can) and simulate: between them every model field is read."""
    paths = hj.simulate(model, GRID, 2, KEY)
    if has_pricer(model, CALL):
        return hj.price(model, CALL) + paths.sum()
    # a data-driven world has no price; hedging in it reads its rate
    return paths.sum() + hj.hedge(model, CALL, hj.NoHedge(), None, GRID, 2, KEY,
                                  hedge_model=BS).pnl.sum()


def _instrument_use(instrument):
    return hj.price(BS, instrument)


def _cost_use(costs):
    return hj.hedge(BS, CALL, hj.DeltaHedge(), costs, GRID, 64, KEY).pnl.sum()


def _strategy_use(strategy):
    return hj.hedge(BS, CALL, strategy, hj.Proportional(1e-3), GRID, 64, KEY).pnl.sum()


# (module, field, out-of-range value, the computation that reads it, "Class.field")
CASES = [
    (BS, "spot", -1.0, _model_use),
    (BS, "vol", -0.2, _model_use),
    (BS, "vol", np.nan, _model_use),
    (BS, "rate", np.inf, _model_use),
    (BS, "div", np.nan, _model_use),
    (BS, "drift", np.nan, _model_use),
    (HESTON, "spot", 0.0, _model_use),
    (HESTON, "v0", -0.01, _model_use),
    (HESTON, "kappa", 0.0, _model_use),
    (HESTON, "theta", -0.04, _model_use),
    (HESTON, "xi", -0.3, _model_use),
    (HESTON, "rho", 1.5, _model_use),
    (HESTON, "rate", np.nan, _model_use),
    (HESTON, "div", -np.inf, _model_use),
    (MERTON, "spot", -100.0, _model_use),
    (MERTON, "vol", 0.0, _model_use),
    (MERTON, "jump_rate", -1.0, _model_use),
    (MERTON, "jump_mean", np.nan, _model_use),
    (MERTON, "jump_std", -0.15, _model_use),
    (MERTON, "rate", np.nan, _model_use),
    (MERTON, "drift", np.inf, _model_use),
    (HISTORICAL, "spot", -5.0, _model_use),
    (HISTORICAL, "rate", np.nan, _model_use),
    (hj.EuropeanCall(100.0, 1.0), "strike", -100.0, _instrument_use),
    (hj.EuropeanCall(100.0, 1.0), "maturity", 0.0, _instrument_use),
    (hj.EuropeanPut(100.0, 1.0), "strike", 0.0, _instrument_use),
    (hj.EuropeanPut(100.0, 1.0), "maturity", -1.0, _instrument_use),
    (hj.Digital(100.0, 1.0), "strike", np.nan, _instrument_use),
    (hj.Digital(100.0, 1.0), "cash", np.inf, _instrument_use),
    (hj.Proportional(1e-3), "rate", -0.01, _cost_use),
    (hj.Fixed(0.01), "per_trade", -1.0, _cost_use),
    (hj.SmoothFixed(0.01, 0.1), "per_trade", -1.0, _cost_use),
    (hj.SmoothFixed(0.01, 0.1), "temperature", 0.0, _cost_use),
    (hj.Spread(0.01), "half_spread", -0.01, _cost_use),
    (hj.Impact(0.01), "coef", -0.01, _cost_use),
    (hj.Impact(0.01), "power", 5.0, _cost_use),
    (hj.RandomSlippage(1e-3, 0.5), "rate", -1e-3, _cost_use),
    (hj.RandomSlippage(1e-3, 0.5), "vol", 100.0, _cost_use),
    (hj.Limits(hj.DeltaHedge(), max_position=2.0), "max_position", -1.0, _strategy_use),
    (hj.Limits(hj.DeltaHedge(), max_trade=0.5), "max_trade", 0.0, _strategy_use),
    (hj.MoveBased(0.05, hj.DeltaHedge()), "threshold", -0.05, _strategy_use),
    (hj.WhalleyWilmott(1.0), "risk_aversion", -1.0, _strategy_use),
]
IDS = [f"{type(m).__name__}.{f}={v}" for m, f, v, _ in CASES]


def _with(module, field, value):
    return eqx.tree_at(lambda m: getattr(m, field), module, value)


def _name(module, field):
    return rf"{type(module).__name__}\.{field} must be"


@pytest.mark.parametrize(("module", "field", "bad", "use"), CASES, ids=IDS)
def test_tree_at_bypass_is_refused_eagerly(module, field, bad, use):
    """`eqx.tree_at` skips the constructor; the computation re-checks concrete values."""
    changed = _with(module, field, jnp.asarray(bad, jnp.result_type(float)))
    with pytest.raises(ValueError, match=rf"{field} must be .*got {field}="):
        use(changed)


# One compiled program per computation: the whole module is its argument, so every field
# arrives traced and all the cases of a module share the program (Heston compiles once, not
# eight times). eqx.filter_jit raises EquinoxRuntimeError on every call; a bare jax.jit is
# covered by the jit-grad cases below.
_COMPILED: dict = {}


def _compiled(use):
    if use not in _COMPILED:
        _COMPILED[use] = eqx.filter_jit(use)
    return _COMPILED[use]


@pytest.mark.parametrize(("module", "field", "bad", "use"), CASES, ids=IDS)
def test_traced_value_is_checked_under_jit(module, field, bad, use):
    run = _compiled(use)
    leaf = getattr(module, field)
    changed = _with(module, field, leaf * 0 + bad)   # same dtype and weak type: same program
    with pytest.raises(RuntimeError, match=_name(module, field)):
        jax.block_until_ready(run(changed))
    # the same compiled code with the module's own (valid) value runs and is finite
    assert np.isfinite(run(module))


# One case per family through vmap and grad (jit covers every parameter above).
_FAMILY = {"BlackScholes.vol=-0.2", "Heston.rho=1.5", "Merton.jump_rate=-1.0",
           "EuropeanCall.strike=-100.0", "Proportional.rate=-0.01",
           "Limits.max_position=-1.0"}
FAMILY = [case for case, name in zip(CASES, IDS, strict=True) if name in _FAMILY]
FAMILY_IDS = [name for name in IDS if name in _FAMILY]


@pytest.mark.parametrize(("module", "field", "bad", "use"), FAMILY, ids=FAMILY_IDS)
def test_traced_value_is_checked_under_vmap(module, field, bad, use):
    good = float(getattr(module, field))
    values = jnp.asarray([good, bad], jnp.result_type(float))
    with pytest.raises(RuntimeError, match=_name(module, field)):
        jax.block_until_ready(jax.vmap(lambda v: use(_with(module, field, v)))(values))
    ok = jax.vmap(lambda v: use(_with(module, field, v)))(values[:1])
    assert np.all(np.isfinite(ok))


@pytest.mark.parametrize(("module", "field", "bad", "use"), FAMILY, ids=FAMILY_IDS)
@pytest.mark.parametrize("jit", [False, True], ids=["grad", "jit-grad"])
def test_traced_value_is_checked_under_grad(module, field, bad, use, jit):
    grad = jax.grad(lambda v: use(_with(module, field, v)))
    grad = jax.jit(grad) if jit else grad
    with pytest.raises(RuntimeError, match=_name(module, field)):
        jax.block_until_ready(grad(bad))
    assert np.isfinite(grad(getattr(module, field)))


@pytest.mark.parametrize("replace", [
    lambda v: hj.BandHedge(v),
    lambda v: hj.WhalleyWilmott(1.0, scale=v),
    lambda v: hj.AsymmetricBand(lower=v, upper=0.1),
    lambda v: hj.AsymmetricBand(lower=0.1, upper=v),
], ids=["BandHedge.width", "WhalleyWilmott.scale", "AsymmetricBand.lower",
        "AsymmetricBand.upper"])
def test_band_built_from_a_traced_width_is_checked(replace):
    """Widths are stored as softplus parameters, so the check rides on the stored value."""
    run = jax.jit(lambda v: _strategy_use(replace(v)))
    with pytest.raises(RuntimeError, match=r"(BandHedge\.width|WhalleyWilmott\.scale|"
                                           r"AsymmetricBand\.(lower|upper)) must be"):
        jax.block_until_ready(run(-0.1))
    assert np.isfinite(run(0.1))


@pytest.mark.parametrize("where", ["spot", "t"])
def test_traced_spot_and_time_are_checked(where):
    bad = {"spot": -1.0, "t": np.nan}[where]
    for fn in (hj.price, lambda m, i, **kw: hj.greeks(m, i, **kw).delta):
        run = jax.jit(lambda v, fn=fn: fn(BS, CALL, **{where: v}))
        with pytest.raises(RuntimeError, match=rf"{where} must be"):
            jax.block_until_ready(run(bad))


def test_book_quantity_is_checked():
    book = hj.Book([hj.EuropeanCall(100.0, 1.0), hj.EuropeanPut(90.0, 0.5)], [1.0, -2.0])
    run = jax.jit(lambda q: hj.price(BS, eqx.tree_at(lambda b: b.quantities, book, (q, q))))
    with pytest.raises(RuntimeError, match=r"Book\.quantities must be finite"):
        jax.block_until_ready(run(jnp.asarray([np.nan])))
    bad = eqx.tree_at(lambda b: b.quantities[0], book, jnp.asarray([np.inf]))
    with pytest.raises(ValueError, match="quantities must be finite"):
        hj.price(BS, bad)


def _fit(strategy, **kw):
    return hj.fit(strategy, hj.risk.mean_cost_variance(lam=0.1), BS, CALL,
                  hj.Proportional(1e-3), GRID, key=KEY, n_paths=64, progress=False, **kw)


def test_fit_refuses_an_out_of_range_strategy_at_once():
    strategy = _with(hj.WhalleyWilmott(1.0), "risk_aversion", jnp.asarray(-1.0))
    with pytest.raises(ValueError, match="risk_aversion must be finite and > 0"):
        _fit(strategy, steps=1)


def test_fit_stops_when_an_update_leaves_the_range():
    """`fit` trains every inexact leaf: a step that takes a checked one (here
    WhalleyWilmott.risk_aversion, moved from 1 to -9 by an optimiser that subtracts 10) out
    of range is caught when the next step runs, naming it."""
    import optax

    minus_ten = optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda grads, state, params=None: (jax.tree.map(lambda g: jnp.full_like(g, -10.0),
                                                        grads), state))
    with pytest.raises(RuntimeError, match=r"WhalleyWilmott\.risk_aversion must be"):
        _fit(hj.WhalleyWilmott(1.0), steps=3, optimizer=minus_ten)
