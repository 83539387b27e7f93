"""Sensitivities of hedge risk by autodiff through hedge(), against finite differences."""

import warnings

import equinox as eqx
import jax
import numpy as np
import pytest

import hedgejax as hj

GRID = hj.TimeGrid(0.25, 30)
KEY = jax.random.key(5)


def _es_of(vol, rate=0.002, width=0.05, n_paths=2**13):
    model = hj.BlackScholes(100.0, vol)
    book = hj.Book([hj.EuropeanCall(100.0, 0.25)], quantities=[-100.0])  # short 100 calls
    res = hj.hedge(model, book, hj.BandHedge(width), hj.Proportional(rate), GRID, n_paths, KEY)
    return hj.risk.expected_shortfall(res.pnl, 0.99)


@pytest.mark.parametrize("argnum, point, h", [(0, 0.2, 1e-4), (1, 0.002, 1e-5),
                                              (2, 0.05, 1e-4)])
def test_es_gradient_matches_central_difference(x64, argnum, point, h):
    """d ES99 / d (vol, cost rate, band width) on common random numbers. ES averages the
    worst 1% of paths: it is piecewise smooth (the set of worst paths changes at kinks), so
    we allow 2% relative."""
    args = [0.2, 0.002, 0.05]
    grad = jax.grad(_es_of, argnums=argnum)(*args)
    up, down = list(args), list(args)
    up[argnum] += h
    down[argnum] -= h
    fd = (float(_es_of(*up)) - float(_es_of(*down))) / (2 * h)
    assert float(grad) == pytest.approx(fd, rel=2e-2)


@pytest.mark.slow  # compile-bound (7-13 s on the 2-core CI machine): the slow tier
def test_heston_parameter_sensitivities_are_finite_and_signed(x64):
    """More vol of vol makes a BS-hedged short call riskier."""
    warnings.simplefilter("ignore", hj.FellerWarning)
    world = hj.Heston(100.0, v0=0.04, kappa=1.5, theta=0.04, xi=0.5, rho=-0.7)
    bs = hj.BlackScholes(100.0, 0.2)
    book = hj.Book([hj.EuropeanCall(100.0, 0.25)], quantities=[-1.0])

    def std_of(heston):
        res = hj.hedge(heston, book, hj.DeltaHedge(), None, GRID, 2**12, KEY, hedge_model=bs)
        return hj.risk.std(res.pnl)

    grads = eqx.filter_grad(std_of)(world)
    for name in ("v0", "kappa", "theta", "xi", "rho", "spot"):
        assert np.isfinite(float(getattr(grads, name))), name
    assert float(grads.xi) > 0
