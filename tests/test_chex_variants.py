"""The same computations eagerly and under `jax.jit` (chex variants), checked with chex's
tree assertions: the public API is pure, so compiling it changes nothing but rounding.

What is asserted, with the model's parameters passed in as arguments (so they are traced
under jit), in both variants:
- `price` of each model (Black-Scholes, Heston, Merton) and all `greeks` of Black-Scholes:
  the same values, finite, scalars;
- `hedge` in each model's world (hedged with Black-Scholes deltas, the cheap compile): the
  same per-path `HedgeResult`, every leaf of shape (n_paths,), pnl = hedge_error - cost;
- an out-of-range parameter of each model is refused with a message naming it: at
  construction when it is concrete, when the computation runs when it is traced.
Kept small (three models, 8 steps, 128 paths): about 20 s of CPU, mostly compilation.
"""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp
from absl.testing import parameterized

import hedgejax as hj

CALL = hj.EuropeanCall(100.0, 0.5)
GRID = hj.TimeGrid(0.5, 8)
N_PATHS = 128
# float32: compiled and eager programs may fuse differently (a few ulps apart)
RTOL, ATOL = 2e-5, 2e-5


def _black_scholes(vol):
    return hj.BlackScholes(100.0, vol, rate=0.01)


def _heston(vol):
    # v0 = vol^2: the same parameter as the other models, as a variance. The parameters
    # violate the Feller condition on purpose (2 kappa theta < xi^2): the variance hits 0.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hj.FellerWarning)
        return hj.Heston(100.0, v0=vol**2, kappa=1.5, theta=0.04, xi=0.5, rho=-0.7)


def _merton(vol):
    return hj.Merton(100.0, vol, jump_rate=0.5, jump_mean=-0.1, jump_std=0.1)


MODELS = (("black_scholes", _black_scholes), ("heston", _heston), ("merton", _merton))
# A parameter of each model: a valid value, one out of its range, and its qualified name.
PARAMETERS = (
    ("black_scholes", lambda x: hj.BlackScholes(100.0, x), 0.2, -0.2, "BlackScholes.vol"),
    ("heston", lambda x: hj.Heston(100.0, 0.04, 1.5, 0.04, 0.3, x), -0.5, 1.5, "Heston.rho"),
    ("merton", lambda x: hj.Merton(100.0, 0.2, 0.5, -0.1, x), 0.1, -0.1, "Merton.jump_std"),
)


class VariantsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*PARAMETERS)
    def test_price_and_out_of_range_parameter(self, make, good, bad, name):
        @self.variant
        def price(x, spot):
            return hj.price(make(x), CALL, spot=spot)

        spot = jnp.float32(105.0)
        value = price(jnp.float32(good), spot)
        chex.assert_shape(value, ())
        chex.assert_tree_all_finite(value)
        chex.assert_trees_all_close(value, hj.price(make(jnp.float32(good)), CALL, spot=spot),
                                    rtol=RTOL, atol=ATOL)
        self.assertGreater(float(value), 5.0)   # at least the intrinsic value of 5
        field = name.split(".")[1]
        with self.assertRaisesRegex((ValueError, RuntimeError), rf"\b{field} must") as caught:
            jax.block_until_ready(price(jnp.float32(bad), spot))
        message = str(caught.exception)
        if self.variant.type == chex.ChexVariantType.WITHOUT_JIT:
            # the constructor sees the value: "vol must be finite and > 0, got vol=-0.2"
            self.assertIsInstance(caught.exception, ValueError)
            self.assertIn(f"got {field}=", message)
        else:
            # the value is traced: the check runs with the computation, and its error names
            # the class ("BlackScholes.vol must be ..."). jax raises it as a JaxRuntimeError
            # on a program's first call and as a ValueError from its fast path afterwards.
            self.assertIn(f"{name} must", message)
            self.assertIn("checked at run time", message)

    @chex.variants(with_jit=True, without_jit=True)
    def test_greeks(self):
        @self.variant
        def greeks(vol, spot):
            return hj.greeks(_black_scholes(vol), CALL, spot=spot)

        vol, spot = jnp.float32(0.25), jnp.float32(105.0)
        result = greeks(vol, spot)
        chex.assert_tree_shape_prefix(result, ())
        chex.assert_tree_all_finite(result)
        chex.assert_trees_all_close(result, hj.greeks(_black_scholes(vol), CALL, spot=spot),
                                    rtol=RTOL, atol=ATOL)
        self.assertTrue(0.5 < float(result.delta) < 1.0)   # in the money
        self.assertGreater(float(result.gamma), 0.0)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*MODELS)
    def test_hedge(self, make):
        hedge_model = hj.BlackScholes(100.0, 0.2, rate=0.01)  # closed-form deltas: fast

        @self.variant
        def run(vol, key):
            return hj.hedge(make(vol), CALL, hj.DeltaHedge(), hj.Proportional(0.001), GRID,
                            N_PATHS, key, hedge_model=hedge_model)

        key, vol = jax.random.key(7), jnp.float32(0.2)
        result = run(vol, key)
        reference = hj.hedge(make(vol), CALL, hj.DeltaHedge(), hj.Proportional(0.001), GRID,
                             N_PATHS, key, hedge_model=hedge_model)
        chex.assert_shape([result.pnl, result.hedge_error, result.cost, result.n_trades,
                           result.terminal_spot], (N_PATHS,))
        chex.assert_shape(result.initial_price, ())
        chex.assert_tree_all_finite(result)
        chex.assert_trees_all_close(result, reference, rtol=RTOL, atol=ATOL)
        # the identity every path obeys: P&L is the hedge error less the costs paid
        chex.assert_trees_all_close(result.pnl, result.hedge_error - result.cost,
                                    rtol=0, atol=1e-5)
