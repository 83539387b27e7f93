"""Reprs of hedgejax modules: concrete scalars print their values (gradients, Monte Carlo
estimates, parameters), larger arrays their dtype and shape, traced values their tracer form."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj

CALL = hj.EuropeanCall(100.0, 1.0)
HESTON = hj.Heston(100.0, 0.04, 1.5, 0.04, 0.3, -0.7)
KEY = jax.random.key(0)


def shown(value) -> str:
    """How a concrete scalar is written: NumPy's shortest text for its dtype."""
    return str(np.asarray(value)[()])


def test_a_gradient_of_a_model_prints_its_numbers():
    grad = jax.grad(lambda m: hj.price(m, CALL))(HESTON)
    text = repr(grad)
    assert text.startswith("Heston(") and "f32[]" not in text
    for field in ("spot", "rate", "div", "v0", "kappa", "theta", "xi", "rho"):
        value = getattr(grad, field)
        assert f"{field}={shown(value)}," in text
        # what is printed reads back to the same float32
        printed = re.search(rf"\b{field}=([-0-9.e+]+)", text).group(1)
        assert np.float32(printed) == value
    assert float(grad.spot) == pytest.approx(0.6, abs=0.05)  # a call's delta, not a default
    assert "scheme='qe'" in text


def test_mc_greeks_print_value_and_standard_error():
    result = hj.mc_greeks(hj.BlackScholes(100.0, 0.2), CALL, 2000, KEY)
    for greek in result.values():
        assert repr(greek) == f"MCGreek(value={shown(greek.value)}, stderr={shown(greek.stderr)})"
        assert float(greek.stderr) > 0
    assert "MCGreek(value=0.5" in repr(result)  # inside a dict: delta of an at-the-money call


def test_float64_values_print_in_full(x64):
    model = hj.BlackScholes(100.0, 0.1 + 0.2)
    assert "vol=0.30000000000000004" in repr(model)


def test_repr_under_jit_keeps_the_tracer_form():
    seen = []

    @jax.jit
    def priced(model, greek):
        seen.extend([repr(model), repr(greek)])
        return hj.price(model, CALL) + greek.value

    priced(hj.BlackScholes(100.0, 0.2), hj.MCGreek(jnp.float32(0.5), jnp.float32(0.1)))
    assert seen[0] == "BlackScholes(spot=f32[], rate=f32[], div=f32[], vol=f32[], drift=None)"
    assert seen[1] == "MCGreek(value=f32[], stderr=f32[])"


def test_large_arrays_print_their_shape():
    prices = np.linspace(100.0, 110.0, 1000)
    assert "prices=f32[1,1000]" in repr(hj.HistoricalPaths(prices))
    assert "returns=f32[999]" in repr(hj.Bootstrap.from_prices(prices, block=5))
    batched = jax.vmap(lambda vol: hj.BlackScholes(100.0, vol))(jnp.linspace(0.1, 0.3, 1000))
    assert "vol=f32[1000]" in repr(batched) and "spot=f32[1000]" in repr(batched)
    assert "MCGreek(value=f32[1000], stderr=0.5)" == repr(
        hj.MCGreek(jnp.zeros(1000), jnp.float32(0.5)))


@pytest.mark.parametrize(("module", "expected"), [
    (hj.BlackScholes(100.0, 0.25, 0.03), "BlackScholes(spot=100.0, rate=0.03, div=0.0, "
                                         "vol=0.25, drift=None)"),
    (hj.EuropeanPut(90.0, 0.5), "EuropeanPut(strike=90.0, maturity=0.5)"),
    (hj.Proportional(0.001), "Proportional(rate=0.001)"),
    (hj.Proportional(0.001) + hj.Fixed(2.0), "CostSum(terms=(Proportional(rate=0.001), "
                                             "Fixed(per_trade=2.0)))"),
    (hj.Limits(hj.DeltaHedge(), max_position=2.0), "Limits(strategy=DeltaHedge(), "
                                                   "max_position=2.0"),
    (hj.Book([CALL, hj.EuropeanPut(90.0, 0.5)], quantities=[10.0, -5.0]),
     "EuropeanCall(strike=[100.], maturity=[1.])"),
    (hj.TimeGrid(1.0, 252), "TimeGrid(maturity=1.0, n_steps=252)"),
])
def test_public_modules_print_their_parameters(module, expected):
    assert expected in repr(module)
    assert "f32[]" not in repr(module)


def test_keys_and_complex_leaves_keep_the_short_form():
    text = repr(hj.MCGreek(value=KEY, stderr=jnp.array([1.0 + 2.0j])))
    assert text == "MCGreek(value=key<fry>[], stderr=c64[1])"


def test_softplus_stored_widths_print_as_passed():
    """BandHedge stores softplus^-1(width); its repr shows the width a person passed, also
    nested in a wrapper, and stays short under jit."""
    width = re.fullmatch(r"BandHedge\(width=([0-9.]+)\)", repr(hj.BandHedge(0.05)))
    assert width and abs(float(width.group(1)) - 0.05) < 1e-7   # float32 softplus round trip
    assert "scale=2.0" in repr(hj.WhalleyWilmott(1.0, scale=2.0))
    text = repr(hj.AsymmetricBand(lower=0.25, upper=0.5))   # float32 softplus round trip
    values = dict(re.findall(r"(lower|upper)=([0-9.]+)", text))
    assert abs(float(values["lower"]) - 0.25) < 1e-6 and abs(float(values["upper"]) - 0.5) < 1e-6
    assert "raw_" not in text
    nested = repr(hj.Limits(hj.BandHedge(0.5), max_position=2.0))
    assert abs(float(re.search(r"BandHedge\(width=([0-9.]+)\)", nested).group(1)) - 0.5) < 1e-6
    assert "raw_" not in nested
    seen = []
    jax.jit(lambda w: seen.append(repr(hj.BandHedge(w))) or w)(0.1)
    assert seen == ["BandHedge(width=weak_f32[])"] or "raw_" not in seen[0]
