"""Strategy wrappers: change how, when or how much another strategy trades.

- `Limits`: caps on the position and on each trade (risk limits).
- `ExecutionLag`: orders are filled `steps` grid steps after they are decided.
- `MoveBased`: rebalance only when spot has moved enough since the last rebalance.

Each wraps any strategy, stateful or not, and forwards its `option` and `option_costs`:
when the inner strategy also trades a listed option, positions are tuples (shares, units of
the option) and the wrapper treats them as a whole (only `Limits` looks at the shares alone).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._validate import check_int, check_positive, float_param, optional_float_param
from .base import AbstractStrategy, Observation, stateless_only
from .delta import DeltaHedge


def _check_strategy(strategy: Any) -> None:
    if not isinstance(strategy, AbstractStrategy):
        raise ValueError("strategy must be an AbstractStrategy, got "
                         f"{type(strategy).__name__}")


def _shares(position: Any) -> jax.Array:
    """The shares of a position (an array, or a tuple (shares, option units))."""
    return position[0] if isinstance(position, tuple) else position


def _with_shares(position: Any, shares: jax.Array) -> Any:
    return (shares, *position[1:]) if isinstance(position, tuple) else shares


def _like(tree: Any, reference: Any) -> Any:
    """`tree` with the shapes and dtypes of `reference` (scan carries must keep their types)."""
    return jax.tree.map(lambda x, r: jnp.broadcast_to(jnp.asarray(x), r.shape).astype(r.dtype),
                        tree, reference)


def _where_paths(cond: jax.Array, new: Any, old: Any) -> Any:
    """Leaf by leaf, `new` on the paths where `cond` (the paths' shape) holds, else `old`.
    Every leaf must be a per-path array (leading axes the paths' shape)."""
    def pick(x, y):
        y = jnp.asarray(y)
        if y.shape[:cond.ndim] != cond.shape:
            raise TypeError("the inner strategy's state must hold per-path arrays (leading "
                            f"axes {cond.shape}), got a leaf of shape {y.shape}")
        c = cond.reshape(cond.shape + (1,) * (y.ndim - cond.ndim))
        return jnp.where(c, jnp.asarray(x).astype(y.dtype), y)
    return jax.tree.map(pick, new, old)


class _Wrapper(AbstractStrategy):
    """A strategy around an inner `strategy` (a field of each subclass): it trades what the
    inner one trades, so its listed option and that option's costs are the inner one's."""

    @property
    def option(self) -> Any:
        return self.strategy.option

    @property
    def option_costs(self) -> Any:
        return self.strategy.option_costs


class Limits(_Wrapper):
    """Risk limits around `strategy`: its target shares are clipped to
    [-max_position, max_position], then the trade (target - current shares) to
    [-max_trade, max_trade]. The result is the target itself wherever no limit binds.

    Both limits are in shares of the underlying and must be > 0; None means no limit (at
    least one must be given). They are float array leaves, so `jax.grad` flows to them
    (through the clip, on the paths where a limit binds). When the inner strategy trades a
    listed option only its shares are limited; its option units pass through. Stateful inner
    strategies keep their state (this wrapper adds none); `__call__` works when the inner
    strategy is stateless.
    """

    strategy: AbstractStrategy
    max_position: jax.Array | None = eqx.field(
        default=None, converter=optional_float_param("max_position", scalar=True))
    max_trade: jax.Array | None = eqx.field(
        default=None, converter=optional_float_param("max_trade", scalar=True))

    def __check_init__(self):
        _check_strategy(self.strategy)
        if self.max_position is None and self.max_trade is None:
            raise ValueError("Limits needs max_position or max_trade (> 0 shares); "
                             "got max_position=None and max_trade=None")
        check_positive("max_position", self.max_position)
        check_positive("max_trade", self.max_trade)

    def limit(self, target: Any, position: Any) -> Any:
        """`target` with its shares brought within the limits, trading from `position`."""
        shares = _shares(target)
        if self.max_position is not None:
            shares = jnp.clip(shares, -self.max_position, self.max_position)
        if self.max_trade is not None:
            held = _shares(position)
            shares = jnp.clip(shares, held - self.max_trade, held + self.max_trade)
        return _with_shares(target, shares)

    def __call__(self, obs: Observation, position: Any) -> Any:
        return self.limit(self.strategy(obs, position), position)

    def init_state(self, position: Any) -> Any:
        return self.strategy.init_state(position)

    def decide(self, obs: Observation, position: Any, state: Any) -> tuple[Any, Any]:
        target, state = self.strategy.decide(obs, position, state)
        return self.limit(target, position), state


# Longest ExecutionLag, in grid steps.
MAX_LAG_STEPS = 1_000


class ExecutionLag(_Wrapper):
    """Orders of `strategy` are filled `steps` grid steps after they are decided.

    The target decided at t_i is filled at t_{i+steps}, at that step's spot S_{i+steps}
    (paying the costs there): the position held over [t_i, t_{i+1}) is the target decided
    at step i - steps, and 0 before the first fill (steps 0 .. steps-1). The inner strategy
    knows its own orders: it is shown the latest target it decided (not yet filled) as its
    `position`. Orders still pending at the end of the grid are never filled: the last
    `steps` decisions have no effect, and `HedgeResult.final_position` (and an `unwind`)
    is the last filled position.

    State: (queue of the `steps` pending targets, oldest first, each shaped like a
    position; the inner strategy's state). `steps` is a static integer >= 1.
    """

    strategy: AbstractStrategy
    steps: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        _check_strategy(self.strategy)
        check_int("steps", self.steps, 1)
        if self.steps > MAX_LAG_STEPS:
            raise ValueError(f"steps must be an integer in [1, {MAX_LAG_STEPS}] (the pending "
                             f"orders ride through the scan one array each), got "
                             f"steps={self.steps}")

    def check_grid(self, n_steps: int) -> None:
        """Refuse a lag that is not shorter than the grid: no order would ever fill."""
        if self.steps >= n_steps:
            raise ValueError(
                f"ExecutionLag steps must be < the grid's n_steps={n_steps} (an order "
                f"decided at step 0 fills at step {self.steps}, after the grid ends, so "
                f"nothing would ever trade), got steps={self.steps}")

    def __call__(self, obs: Observation, position: Any) -> Any:
        stateless_only(self)

    def init_state(self, position: Any) -> Any:
        return (position,) * self.steps, self.strategy.init_state(position)

    def decide(self, obs: Observation, position: Any, state: Any) -> tuple[Any, Any]:
        queue, inner = state
        ordered = queue[-1]  # the latest decided target
        target, inner = self.strategy.decide(obs, ordered, inner)
        target = _like(target, ordered)
        return queue[0], (queue[1:] + (target,), inner)


class MoveBased(_Wrapper):
    """Event-triggered rebalancing: rebalance with `strategy` (delta hedging by default) at
    step 0 and whenever spot has moved by at least `threshold` (relative) since the last
    rebalance, |S_i / S_last - 1| >= threshold; hold otherwise.

    The inner strategy is consulted only at rebalances: its target is taken and its state
    (if any; it must hold per-path arrays) advances only on the paths that rebalance, and
    S_last resets there even when the inner strategy chooses not to trade. `threshold` is a
    float leaf > 0 (e.g. 0.02 for 2%); the trigger is a comparison, so P&L is piecewise
    constant in it (zero gradient). State: (S_last per path, the inner strategy's state).
    """

    threshold: jax.Array = eqx.field(converter=float_param("threshold", scalar=True))
    strategy: AbstractStrategy = eqx.field(default_factory=DeltaHedge)

    def __check_init__(self):
        check_positive("threshold", self.threshold)
        _check_strategy(self.strategy)

    def __call__(self, obs: Observation, position: Any) -> Any:
        stateless_only(self)

    def init_state(self, position: Any) -> Any:
        # S_last is only read after step 0 has set it; ones keep the division finite.
        return jnp.ones_like(_shares(position)), self.strategy.init_state(position)

    def decide(self, obs: Observation, position: Any, state: Any) -> tuple[Any, Any]:
        last_spot, inner = state
        moved = jnp.abs(obs.spot / last_spot - 1.0) >= self.threshold
        rebalance = (obs.step == 0) | moved
        target, new_inner = self.strategy.decide(obs, position, inner)
        target = _where_paths(rebalance, target, position)
        inner = _where_paths(rebalance, new_inner, inner)
        last_spot = jnp.where(rebalance, obs.spot.astype(last_spot.dtype), last_spot)
        return target, (last_spot, inner)
