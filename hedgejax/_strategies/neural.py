"""Deep hedging (Buehler, Gonon, Teichmann & Wood, 2019): a neural network maps the hedger's
state to the hedge position, trained end to end through `hedge()` on a risk measure of the
P&L (`fit()`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from .. import features as _features
from .._costs import AbstractCost
from .._exotics import AbstractPathDependent
from .._instruments import AbstractInstrument
from .._validate import check_int, check_positive, is_concrete, real_scalar
from .base import (
    MAX_HIDDEN,
    AbstractStrategy,
    Observation,
    as_key,
    check_network_size,
    stateless_only,
)
from .learned import zero_last_layer

# Hidden-state size of `NeuralHedge(recurrent=True)` when `hidden_state` is not given.
DEFAULT_HIDDEN_STATE = 8
# The name of the network's hidden activations for `jax.checkpoint` policies: a caller that
# checkpoints the hedging step may save them (`jax.checkpoint_policies.
# save_only_these_names(CHECKPOINT_NAME)`) instead of recomputing the network in the
# backward pass. Without such a policy the name changes nothing.
CHECKPOINT_NAME = "hedgejax_policy_hidden"


class _Frozen:
    """A pytree kept out of a module's leaves (in a static field), so that `fit` does not
    train it and `jit` compiles it in as a constant: the listed options and their costs.
    Hashed and compared by its structure and its leaves' values."""

    __slots__ = ("tree", "_key")

    def __init__(self, tree: Any, name: str):
        leaves, treedef = jax.tree.flatten(tree)
        if not all(is_concrete(x) for x in leaves):
            raise ValueError(f"{name} must be concrete (build the NeuralHedge outside "
                             "jax.jit/vmap/grad): it is fixed configuration, not trained")
        self.tree = tree
        self._key = (treedef, tuple((np.asarray(x).dtype.str, np.shape(x),
                                     np.asarray(x).tobytes()) for x in leaves))

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Frozen) and self._key == other._key

    def __repr__(self) -> str:
        return repr(self.tree)


def _mlp_columns(mlp: eqx.nn.MLP, x: jax.Array) -> jax.Array:
    """The tanh MLP on every column of x (in, N) -> (out, N), layer by layer as one matrix
    product W x + b for all paths (the arithmetic of `jax.vmap(mlp)`, paths along the
    contiguous axis: measured faster on CPU than rows (N, in) x W^T, see `NeuralHedge`)."""
    for layer in mlp.layers[:-1]:
        x = checkpoint_name(jnp.tanh(layer.weight @ x + layer.bias[:, None]), CHECKPOINT_NAME)
    last = mlp.layers[-1]
    return last.weight @ x + last.bias[:, None]


def _gru_columns(cell: eqx.nn.GRUCell, x: jax.Array, h: jax.Array) -> jax.Array:
    """`eqx.nn.GRUCell` on every column of x (in, N), h (H, N) -> (H, N) (Cho et al. 2014;
    equinox's gate layout and arithmetic: reset r, update z, candidate n, then
    h' = n + z (h - n))."""
    ig = cell.weight_ih @ x + cell.bias[:, None]
    hg = cell.weight_hh @ h
    size = cell.hidden_size
    reset = jax.nn.sigmoid(ig[:size] + hg[:size])
    update = jax.nn.sigmoid(ig[size:2 * size] + hg[size:2 * size])
    new = jnp.tanh(ig[2 * size:] + reset * (hg[2 * size:] + cell.bias_n[:, None]))
    return new + update * (h - new)


def _takes_two_arguments(f: Any) -> bool:
    """Whether f can be called as f(obs, position) (True when its signature is unknown)."""
    import inspect

    try:
        inspect.signature(f).bind(None, None)
    except TypeError:
        return False
    except ValueError:      # no signature (e.g. some builtins): let the call decide
        return True
    return True


def _is_factory(f: Any) -> bool:
    """Whether f is one of hj.features' factories (they return a Feature when called)."""
    import inspect

    return (inspect.isfunction(f) and f.__module__ == _features.__name__
            and inspect.signature(f).return_annotation in ("Feature", _features.Feature))


def _check_features(features: Any) -> tuple:
    if not isinstance(features, (tuple, list)) or not features:
        raise ValueError("features must be None or a non-empty tuple of feature functions "
                         f"f(obs, position) (e.g. from hj.features), got features={features!r}")
    for i, f in enumerate(features):
        if not callable(f):
            raise ValueError(f"features[{i}] must be a function f(obs, position) (e.g. "
                             f"hj.features.log_moneyness(100.0)), got {f!r}")
        if not _takes_two_arguments(f) or _is_factory(f):
            raise ValueError(
                f"features[{i}] must be a function f(obs, position) taking two arguments, got "
                f"{getattr(f, '__name__', f)!r}, which does not (a factory such as "
                "hj.features.delta or hj.features.log_moneyness must be called first: "
                "hj.features.delta(), hj.features.log_moneyness(100.0))")
        width = _features.width_of(f)
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
            raise ValueError(f"features[{i}].width must be an integer >= 1 (the columns it "
                             f"returns), got width={width!r}")
        try:
            hash(f)
        except TypeError:
            raise ValueError(f"features[{i}] must be hashable (a function or an "
                             f"hj.features.Feature), got {f!r}") from None
    return tuple(features)


def _check_options(options: Any, option_costs: Any) -> tuple[tuple, tuple | None]:
    if isinstance(options, AbstractInstrument):
        options = (options,)
    if not isinstance(options, (tuple, list)):
        raise ValueError(f"options must be a tuple of European instruments (listed calls, "
                         f"puts), got options={options!r}")
    for i, option in enumerate(options):
        if not isinstance(option, AbstractInstrument):
            raise ValueError(f"options[{i}] must be an instrument (e.g. EuropeanCall), got "
                             f"{type(option).__name__}")
        if isinstance(option, AbstractPathDependent):
            raise ValueError(f"options[{i}] must be a European instrument (a listed call, put "
                             f"or digital), got the path-dependent {type(option).__name__}")
        if jnp.ndim(option.maturity) != 0:
            raise ValueError(f"options[{i}] must be one instrument (scalar fields), got "
                             f"maturity of shape {jnp.shape(option.maturity)}")
    options = tuple(options)
    if option_costs is None:
        return options, None
    if not options:
        raise ValueError("option_costs must be None when no options are traded, got "
                         f"option_costs={option_costs!r}")
    if isinstance(option_costs, AbstractCost):
        option_costs = (option_costs,)
    if not isinstance(option_costs, (tuple, list)) or len(option_costs) != len(options):
        raise ValueError(f"option_costs must be None or a tuple of {len(options)} costs (one "
                         f"per option, None for frictionless), got option_costs={option_costs!r}")
    for i, cost in enumerate(option_costs):
        if cost is not None and not isinstance(cost, AbstractCost):
            raise ValueError(f"option_costs[{i}] must be an AbstractCost or None, got "
                             f"{type(cost).__name__}")
    return options, tuple(option_costs)


class NeuralHedge(AbstractStrategy):
    """A deep-hedging policy (Buehler, Gonon, Teichmann & Wood, 2019): a tanh MLP of
    features of the observation (and, recurrent, of a learned state) gives the hedge.

    Positions. With `residual=True` (default) the policy is a residual around delta hedging,

        shares = -delta + book_scale x out_0                                  (shares),

    and with listed options (`options=(o_1, ..., o_k)`) the shares also neutralise the
    options' delta: shares = -(delta + sum_j units_j delta_j) + book_scale x out_0, with
    units_j = book_scale x out_j. With `residual=False` the network is the whole hedge,
    shares = book_scale x out_0 (pfhedge's and Deep Hedging's parametrisation).

    The output layer starts at exact zeros, so the untrained network outputs exactly 0:
    with `residual=True` the untrained policy's shares are -delta bit for bit (x + 0 = x in
    floating point), the decision of `DeltaHedge(every=1)`, and it holds no options; with
    `residual=False` it holds nothing. Training learns the correction that costs, discrete
    rebalancing or a misspecified hedge model call for.

    Features (`features=None`, the policy NeuralHedge has always been): log(S / reference),
    sqrt(time to maturity), position / book_scale (the shares held before this decision,
    which lets the policy learn no-trade behaviour under costs), delta / book_scale, and
    with `variance_feature=True` sqrt(variance) (the world's volatility, e.g. Heston); with
    options, the option units held / book_scale as well. Any other tuple of feature
    functions f(obs, position) can be given (`hj.features`: path state of the book, gamma,
    vega, realised vol, ... or a plain function of your own); each returns O(1) values of
    shape (n_paths,) or (n_paths, width).

    Recurrence (`hidden_state=H > 0` or `recurrent=True`, H = 8): a state h of H numbers per
    path is carried through `hedge()`'s loop (`init_state`/`decide`). At each step the MLP
    reads the features and h, then h is updated by a GRU cell (Cho et al. 2014,
    `eqx.nn.GRUCell`) of the features: h <- GRU(features, h), h = 0 at t0. The untrained
    recurrent policy is still exactly delta hedging (its output layer is zero); trained,
    h lets it remember what the features of one step do not show (the path so far), as
    Deep Hedging's recurrent agents do.

    Realised variance: when a feature declares `needs_realised_variance`
    (`hj.features.realised_vol`), the policy carries log S_{i-1} and the running sum of
    squared log returns and fills `obs.realised_variance` = sum / t_i (0 at t0).

    The network is evaluated for all paths at once: the features stacked into one
    (n_in, n_paths) matrix X, each layer one matrix product W X + b (`jax.vmap(mlp)`'s
    arithmetic up to the order of the sums: a trained network agrees with the vmapped one
    to rounding), paths along the contiguous axis. On the 2-core CPU, W5's training step
    (2^15 paths, 20 steps, 32 x 4, entropic risk, value and gradient through `hedge()`)
    took 8-16% less time than with the vmapped network (best of 10-20 interleaved runs
    each; the machine was shared, medians within noise). The hidden activations carry the
    name `CHECKPOINT_NAME`, for a checkpointing policy that saves them rather than
    recomputing the network.

    Inside `hedge()` the untrained policy's P&L equals `DeltaHedge`'s to rounding, not bit
    for bit: the network changes the compiled step, and XLA may then evaluate the book's
    delta (the `obs.delta` both policies read) with last-bit differences (seen on CPU with
    jax 0.12: 7e-15 on P&Ls of order 1 in float64).

    Trained by `fit()`: every inexact-array leaf (the MLP's and the GRU's weights). The
    listed options and their costs are configuration, kept out of the leaves.

    Example:
        >>> import jax, hedgejax as hj
        >>> policy = hj.NeuralHedge(jax.random.key(0))
        >>> res = hj.hedge(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 0.25), policy,
        ...                None, hj.TimeGrid(0.25, 20), 256, jax.random.key(1))
        >>> res.pnl.shape
        (256,)
    """

    mlp: eqx.nn.MLP
    cell: eqx.nn.GRUCell | None
    reference: float = eqx.field(static=True)
    book_scale: float = eqx.field(static=True)
    variance_feature: bool = eqx.field(static=True)
    features: tuple = eqx.field(static=True)
    residual: bool = eqx.field(static=True)
    hidden_state: int = eqx.field(static=True)
    listed: _Frozen | None = eqx.field(static=True)

    def __init__(
        self,
        key: jax.Array,
        hidden: int = 32,
        depth: int = 2,
        *,
        features: Sequence | None = None,
        hidden_state: int = 0,
        recurrent: bool = False,
        options: Sequence[AbstractInstrument] = (),
        option_costs: Sequence[AbstractCost | None] | None = None,
        residual: bool = True,
        reference: float = 100.0,
        book_scale: float = 1.0,
        variance_feature: bool = False,
    ):
        """Args:
            key: `jax.random` key (or int seed) for the initial weights.
            hidden: units per hidden layer.
            depth: number of hidden layers.
            features: a tuple of feature functions f(obs, position) (module
                `hedgejax.features`), or None for the default features above.
            hidden_state: size H of the recurrent state (0: no recurrence).
            recurrent: carry a recurrent state of `DEFAULT_HIDDEN_STATE` (8) numbers when
                `hidden_state` is 0.
            options: listed European options (maturing at or after the grid's end) traded
                besides the underlying; positions are then (shares, units (n_paths, k)).
            option_costs: one cost per option (an `AbstractCost`, charged per unit at the
                option's market price; None entries frictionless), or None (all
                frictionless).
            residual: positions around delta hedging (True) or the network's output alone.
            reference: reference price for the default log-moneyness feature (currency);
                unused with `features=` (give `hj.features.log_moneyness(K)` there).
            book_scale: typical size of the book's delta (shares; 1 for one option): the
                default position and delta features are divided by it and the outputs
                multiplied.
            variance_feature: with the default features, also feed sqrt(obs.variance)
                (the world must provide it; with `features` given, add
                `hj.features.volatility` instead).

        Raises:
            ValueError: naming the parameter: hidden < 1, depth < 0, hidden_state < 0,
                features not a non-empty tuple of functions, options not European
                instruments, option_costs of the wrong length, reference or book_scale
                not > 0.
        """
        check_positive("reference", reference)
        check_positive("book_scale", book_scale)
        hidden = check_int("hidden", hidden, 1)
        depth = check_int("depth", depth, 0)
        check_network_size(hidden, depth)
        hidden_state = check_int("hidden_state", hidden_state, 0)
        if hidden_state > MAX_HIDDEN:
            raise ValueError(f"hidden_state must be an integer in [0, {MAX_HIDDEN}], got "
                             f"hidden_state={hidden_state}")
        for name, flag in (("recurrent", recurrent), ("residual", residual),
                           ("variance_feature", variance_feature)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {name}={flag!r}")
        if recurrent and hidden_state == 0:
            hidden_state = DEFAULT_HIDDEN_STATE
        options, option_costs = _check_options(options, option_costs)
        self.reference = real_scalar("reference", reference)
        self.book_scale = real_scalar("book_scale", book_scale)
        k = len(options)
        if features is None:
            features = _features.default_features(self.reference, self.book_scale,
                                                  bool(variance_feature))
            if k:
                features = features + (_features.option_units(k, self.book_scale),)
        else:
            if variance_feature:
                raise ValueError("variance_feature=True applies to the default features; with "
                                 "features given, add hj.features.volatility to them")
            features = _check_features(features)
        n_in = sum(_features.width_of(f) for f in features)
        key = as_key(key)
        mlp = eqx.nn.MLP(n_in + hidden_state, 1 + k, hidden, depth, activation=jnp.tanh,
                         key=key)
        self.mlp = zero_last_layer(mlp)
        self.cell = (eqx.nn.GRUCell(n_in, hidden_state, key=jax.random.fold_in(key, 1))
                     if hidden_state else None)
        self.variance_feature = bool(variance_feature)
        self.features = features
        self.residual = bool(residual)
        self.hidden_state = hidden_state
        self.listed = _Frozen((options, option_costs), "options") if k else None

    # ---------------------------------------------------------------- configuration

    @property
    def option(self) -> tuple | None:
        """The listed options traded (a tuple of k instruments), None without."""
        return None if self.listed is None else self.listed.tree[0]

    @property
    def option_costs(self) -> tuple | None:
        """Their costs (a tuple of k, None entries frictionless), or None."""
        return None if self.listed is None else self.listed.tree[1]

    @property
    def n_options(self) -> int:
        return 0 if self.listed is None else len(self.listed.tree[0])

    @property
    def tracks_realised_variance(self) -> bool:
        """Whether a feature reads `obs.realised_variance` (the policy then tracks it)."""
        return any(getattr(f, "needs_realised_variance", False) for f in self.features)

    @property
    def stateful(self) -> bool:
        return self.cell is not None or self.tracks_realised_variance

    # ---------------------------------------------------------------- evaluation

    def _columns(self, obs: Observation, position: Any) -> jax.Array:
        """The features as one matrix (n_features, N), N = obs.spot.size paths (in the
        order of obs.spot.reshape(-1)). ValueError naming a feature whose output has the
        wrong shape."""
        spot = obs.spot
        dtype = spot.dtype
        columns = []
        for i, f in enumerate(self.features):
            x = jnp.asarray(f(obs, position))
            width = _features.width_of(f)
            if x.ndim == 0:
                x = jnp.broadcast_to(x, spot.shape)
            if x.shape == spot.shape:
                x = x[..., None]
            if x.shape != spot.shape + (width,):
                raise ValueError(
                    f"features[{i}] ({f!r}) returned shape {x.shape}; with obs.spot of shape "
                    f"{spot.shape} a feature of width {width} returns "
                    + (f"{spot.shape}" if width == 1 else f"{spot.shape + (width,)}")
                    + " (a feature returning j columns declares f.width = j)")
            x = x.astype(dtype)
            columns.append(x.reshape(1, -1) if width == 1 else
                           jnp.moveaxis(x, -1, 0).reshape(width, -1))
        return columns[0] if len(columns) == 1 else jnp.concatenate(columns, axis=0)

    def inputs(self, obs: Observation, position: Any) -> jax.Array:
        """The features stacked, shape (*path_shape, n_features), path_shape that of
        obs.spot (what the network reads, besides the recurrent state)."""
        x = self._columns(obs, position)
        return x.T.reshape(obs.spot.shape + (x.shape[0],))

    def _positions(self, obs: Observation, out: jax.Array):
        """Positions from the network's outputs out (1 + k, N)."""
        spot = obs.spot
        dtype = spot.dtype
        scale = self.book_scale
        correction = out[0].reshape(spot.shape)
        if self.listed is None:
            if self.residual:
                return (-obs.delta + scale * correction).astype(dtype)
            return (scale * correction).astype(dtype)
        k = out.shape[0] - 1
        units = (scale * out[1:].T.reshape(spot.shape + (k,))).astype(dtype)
        if self.residual:
            option_delta = jnp.reshape(obs.option_delta, units.shape).astype(dtype)
            exposure = obs.delta + jnp.sum(units * option_delta, axis=-1)
            shares = -exposure + scale * correction
        else:
            shares = scale * correction
        return shares.astype(dtype), units

    def _step(self, obs: Observation, position: Any, h: jax.Array | None):
        x = self._columns(obs, position)
        if h is None:
            return self._positions(obs, _mlp_columns(self.mlp, x)), None
        h_columns = h.reshape(-1, self.hidden_state).T.astype(x.dtype)
        out = _mlp_columns(self.mlp, jnp.concatenate([x, h_columns], axis=0))
        h_next = _gru_columns(self.cell, x, h_columns).T.reshape(h.shape).astype(h.dtype)
        return self._positions(obs, out), h_next

    def __call__(self, obs: Observation, position: Any):
        if self.stateful:
            stateless_only(self)
        return self._step(obs, position, None)[0]

    # ---------------------------------------------------------------- state in hedge()

    def init_state(self, position: Any) -> Any:
        """(h, (log S_{i-1}, sum of squared log returns)): zeros; None parts when unused
        (None altogether for a memoryless policy without realised variance)."""
        if not self.stateful:
            return None
        shares = position[0] if isinstance(position, tuple) else position
        h = (jnp.zeros(shares.shape + (self.hidden_state,), shares.dtype)
             if self.cell is not None else None)
        tracker = ((jnp.zeros_like(shares), jnp.zeros_like(shares))
                   if self.tracks_realised_variance else None)
        return h, tracker

    def decide(self, obs: Observation, position: Any, state: Any) -> tuple[Any, Any]:
        """(target position, new state): the policy at this step, the state updated."""
        if not self.stateful:
            return self(obs, position), state
        h, tracker = state
        if tracker is not None:
            previous, sum_sq = tracker
            log_spot = jnp.log(obs.spot)
            ret = jnp.where(obs.step == 0, jnp.zeros_like(log_spot), log_spot - previous)
            sum_sq = sum_sq + ret * ret
            t = jnp.asarray(obs.time, sum_sq.dtype)
            elapsed = t > 0
            variance = jnp.where(elapsed, sum_sq / jnp.where(elapsed, t, 1.0), 0.0)
            obs = eqx.tree_at(lambda o: o.realised_variance, obs,
                              jnp.broadcast_to(variance, obs.spot.shape),
                              is_leaf=lambda x: x is None)
            tracker = (log_spot.astype(previous.dtype), sum_sq)
        target, h = self._step(obs, position, h)
        return target, (h, tracker)
