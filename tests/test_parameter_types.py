"""Every float parameter of every public constructor refuses values that are not real numbers
(None, strings, booleans, complex), and every model and cost parameter refuses arrays, with a
ValueError naming the parameter at construction (not a broadcasting error later)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj

# constructor, its valid keyword arguments, the parameters that must be scalars
MODEL_LIKE = {
    "BlackScholes": (hj.BlackScholes, dict(spot=100.0, vol=0.2, rate=0.01, div=0.0,
                                           drift=0.05)),
    "Heston": (hj.Heston, dict(spot=100.0, v0=0.04, kappa=1.5, theta=0.04, xi=0.3, rho=-0.7,
                               rate=0.01, div=0.0)),
    "Merton": (hj.Merton, dict(spot=100.0, vol=0.2, jump_rate=1.0, jump_mean=-0.1,
                               jump_std=0.1, rate=0.01, div=0.0, drift=0.05)),
    "Proportional": (hj.Proportional, dict(rate=0.001)),
    "Fixed": (hj.Fixed, dict(per_trade=1.0)),
    "Spread": (hj.Spread, dict(half_spread=0.01)),
    "Impact": (hj.Impact, dict(coef=0.01, power=0.5)),
    "RandomSlippage": (hj.RandomSlippage, dict(rate=1e-3, vol=0.5)),
}
# float parameters that may be arrays (instrument groups, per-instrument band settings)
ARRAY_OK = {
    "EuropeanCall": (hj.EuropeanCall, dict(strike=100.0, maturity=1.0)),
    "EuropeanPut": (hj.EuropeanPut, dict(strike=100.0, maturity=1.0)),
    "Digital": (hj.Digital, dict(strike=100.0, maturity=1.0, cash=1.0)),
    "BandHedge": (hj.BandHedge, dict(width=0.05)),
    "AsymmetricBand": (hj.AsymmetricBand, dict(lower=0.05, upper=0.1)),
}
NOT_REAL = {"None": None, "str": "0.2", "bool": True, "complex": 0.2 + 1j,
            "complex-array": np.array([0.2 + 0j]), "object": object()}


def _cases(table):
    return [(name, param) for name, (_, kwargs) in table.items() for param in kwargs]


@pytest.mark.parametrize("label", list(NOT_REAL))
@pytest.mark.parametrize("name, param", _cases(MODEL_LIKE) + _cases(ARRAY_OK))
def test_values_that_are_not_real_numbers_are_refused_by_name(name, param, label):
    ctor, kwargs = {**MODEL_LIKE, **ARRAY_OK}[name]
    if param == "drift" and label == "None":    # optional: None means rate - div
        assert ctor(**dict(kwargs, drift=None)).drift is None
        return
    with pytest.raises(ValueError, match=rf"^{param} must be a real number"):
        ctor(**dict(kwargs, **{param: NOT_REAL[label]}))


@pytest.mark.parametrize("value", [[0.2, 0.3], np.array([0.2]), jnp.ones((2, 2))])
@pytest.mark.parametrize("name, param", _cases(MODEL_LIKE))
def test_model_and_cost_parameters_must_be_scalars(name, param, value):
    ctor, kwargs = MODEL_LIKE[name]
    with pytest.raises(ValueError, match=rf"^{param} must be a scalar, got shape"):
        ctor(**dict(kwargs, **{param: value}))


@pytest.mark.parametrize("name", list(MODEL_LIKE))
def test_valid_scalars_of_any_numeric_type_construct(name):
    """ints, NumPy scalars and 0-d arrays are fine; a model batched by vmap still works."""
    import decimal
    import fractions

    ctor, kwargs = MODEL_LIKE[name]
    reference = ctor(**kwargs)
    for convert in (np.float64, np.asarray, jnp.asarray):
        obj = ctor(**{k: convert(v) for k, v in kwargs.items()})
        assert all(jnp.ndim(x) == 0 for x in jax.tree.leaves(obj))
    # exact rationals and decimals are real numbers; low-precision arrays are cast to the
    # working precision (float32, or float64 with jax_enable_x64)
    for convert in (lambda v: fractions.Fraction(v).limit_denominator(10**6),
                    lambda v: decimal.Decimal(str(v)), lambda v: jnp.asarray(v, jnp.float16)):
        obj = ctor(**{k: convert(v) for k, v in kwargs.items()})
        for got, want in zip(jax.tree.leaves(obj), jax.tree.leaves(reference), strict=True):
            assert got.dtype == jnp.result_type(float)
            np.testing.assert_allclose(float(got), float(want), rtol=1e-3)


def test_a_vmapped_model_and_array_instruments_still_work():
    call = hj.EuropeanCall(100.0, 1.0)
    prices = jax.vmap(lambda v: hj.price(hj.BlackScholes(100.0, v), call))(
        jnp.array([0.2, 0.3]))
    assert prices.shape == (2,) and bool(prices[1] > prices[0])
    grid = hj.price(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(jnp.array([90.0, 110.0]), 1.0))
    assert grid.shape == (2,) and bool(grid[0] > grid[1])


@pytest.mark.parametrize("kwargs, param", [(dict(spot="100"), "spot"), (dict(t=None), "t"),
                                           (dict(spot=1j), "spot")])
def test_price_and_greeks_name_a_bad_spot_or_time(kwargs, param):
    model, call = hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0)
    for fn in (hj.price, hj.greeks):
        with pytest.raises(ValueError, match=rf"^{param} must be a real number"):
            fn(model, call, **kwargs)


@pytest.mark.parametrize("name, param", _cases(MODEL_LIKE) + _cases(ARRAY_OK))
def test_values_beyond_the_working_precision_are_refused_by_name(name, param):
    """1e300 is a finite float64 but inf in float32 (the default): refused after the cast,
    with the value as given (e.g. the issue's AsymmetricBand(1e300, 0.1))."""
    ctor, kwargs = {**MODEL_LIKE, **ARRAY_OK}[name]
    with pytest.raises(ValueError, match=rf"^{param} must be finite.*{param}=1e\+300"):
        ctor(**dict(kwargs, **{param: 1e300}))


# settings outside the float-parameter tables above, each refused by name (found by review)
OTHER = [
    (lambda v: hj.TimeGrid(v, 10), "maturity", ["0.2", True, np.complex64(0.2), 1e300]),
    (lambda v: hj.LearnedBand(jax.random.key(0), 4, reference=v), "reference",
     [None, "1", True, 1j]),
    (lambda v: hj.LearnedBand(jax.random.key(0), 4, init_width=v), "init_width", [None, "1"]),
    (lambda v: hj.LearnedBand(jax.random.key(0), 4, book_scale=v), "book_scale", [None, "1"]),
    (lambda v: hj.NeuralHedge(jax.random.key(0), 4, reference=v), "reference", [None, "1"]),
    (lambda v: hj.NeuralHedge(jax.random.key(0), 4, book_scale=v), "book_scale", [None, "1"]),
    (lambda v: hj.Limits(hj.DeltaHedge(), max_position=v), "max_position",
     ["0.2", True, 1j, 1e300]),
    (lambda v: hj.Limits(hj.DeltaHedge(), max_trade=v), "max_trade", ["0.2", True]),
    (lambda v: hj.MoveBased(threshold=v), "threshold", [None, "0.1", True, 1j, 1e300]),
    (lambda v: hj.Book([hj.EuropeanCall(100.0, 1.0)], quantities=[v]), "quantities",
     ["10", 1j]),
    (lambda v: hj.HistoricalPaths(v), "prices",
     [["100", "101", "102"], np.array([True] * 3), np.array([100 + 1j] * 3)]),
    (lambda v: hj.Bootstrap(v, block=2), "returns",
     [["0.01"] * 30, np.array([0.01 + 0.5j] * 30), np.array([True] * 30)]),
]


@pytest.mark.parametrize("make, param, value",
                         [(m, p, v) for m, p, values in OTHER for v in values])
def test_other_settings_are_refused_by_name(make, param, value):
    with pytest.raises(ValueError, match=rf"^{param} must be"):
        make(value)


@pytest.mark.parametrize("make, param", [
    (lambda v: hj.BandHedge(v), "width"),
    (lambda v: hj.AsymmetricBand(v, 0.1), "lower"),
    (lambda v: hj.AsymmetricBand(0.1, v), "upper"),
    (lambda v: hj.WhalleyWilmott(v), "risk_aversion"),
    (lambda v: hj.WhalleyWilmott(1.0, v), "scale"),
    (lambda v: hj.Limits(hj.DeltaHedge(), max_position=v), "max_position"),
    (lambda v: hj.Limits(hj.DeltaHedge(), max_trade=v), "max_trade"),
    (lambda v: hj.MoveBased(v, hj.DeltaHedge()), "threshold"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_strategy_settings_must_be_scalars(make, param):
    """One underlying, one band: an array would only fail later, inside hedge()."""
    with pytest.raises(ValueError, match=rf"^{param} must be a scalar, got shape \(2,\)"):
        make([0.1, 0.2])


@pytest.mark.parametrize("inst, field", [
    (hj.EuropeanCall([100.0, 110.0], 1.0), "strike"),
    (hj.EuropeanPut(100.0, [0.5, 1.0]), "maturity"),
    (hj.Digital(100.0, 1.0, cash=[1.0, 2.0]), "cash"),
])
def test_book_and_hedge_take_one_option_per_instrument(inst, field):
    """Array instruments price as a vector (above), but a Book (and so hedge) holds one
    option per instrument: refused by name, not a broadcasting error later."""
    match = rf"instruments\[0\]\.{field} must be a scalar in a Book or a hedge"
    with pytest.raises(ValueError, match=match):
        hj.Book([inst])
    with pytest.raises(ValueError, match=match):
        hj.hedge(hj.BlackScholes(100.0, 0.2), inst, hj.DeltaHedge(), None, hj.TimeGrid(1.0, 4),
                 64, jax.random.key(0))


def test_grid_size_and_network_keys():
    """A billion-step grid fails fast by name; network strategies take an int seed or a
    key and name anything else."""
    with pytest.raises(ValueError, match=r"n_steps must be an integer in \[1, 1,000,000\]"):
        hj.TimeGrid(1.0, 10**9)
    for make in (hj.NeuralHedge, hj.LearnedBand):
        a, b = make(7, hidden=4), make(jax.random.key(7), hidden=4)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        for bad in ("a", None, 1.5):
            with pytest.raises(ValueError, match="key must be a jax.random key"):
                make(bad, hidden=4)
