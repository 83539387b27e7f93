"""Indifference pricing: the premium that makes selling a book and hedging it, with a learned
(or any) strategy, no riskier than doing nothing (Buehler, Gonon, Teichmann & Wood 2019,
"Deep hedging", section 4; pfhedge's `Hedger.price`).

For a risk measure rho of terminal P&L (currency at the horizon T; P&L > 0 a gain), the
seller of the book who receives cash p at t = 0, hedges it with the strategy and pays the
book's payoff has terminal P&L X + p e^{rT} (X: the hedged short book's P&L without the
premium). The indifference price is the p with

    rho(X + p e^{rT}) = rho(0),

which, for a cash-invariant rho (rho(X + c) = rho(X) - c: entropic risk, expected
shortfall, every OCE, quadratic CVaR), is p = e^{-rT} (rho(X) - rho(0)). It is solved by
bisection in general, so any rho that decreases with added cash works (a risk measure of
the variance alone does not depend on cash: refused with ValueError).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._costs import AbstractCost
from ._fit import History, fit
from ._grid import TimeGrid
from ._hedge import hedge
from ._instruments import AbstractInstrument, Book, as_book
from ._models.base import AbstractModel
from ._repr import module_repr
from ._strategies.base import AbstractStrategy, as_key
from ._validate import check_int, check_positive
from .risk import OCE

RiskMeasure = Callable[[jax.Array], jax.Array]


class IndifferencePrice(eqx.Module):
    """What `indifference_price` found.

    Attributes:
        price: the indifference price of the book at t = 0 (currency): the premium the
            seller needs for rho(hedged short book + premium) = rho(0).
        stderr: its Monte Carlo standard error by batch means (the price solved on
            `batches` disjoint batches of the held-out paths; std / sqrt(batches)).
        risk_hedged: rho(X), X the hedged short book's terminal P&L without the premium
            (currency at T).
        risk_unhedged: rho of the unhedged short book's terminal P&L without the premium
            (minus the payoff; currency at T).
        risk_zero: rho(0), the risk of doing nothing (a zero P&L on every path).
        unhedged_price: the indifference price without hedging (currency at t = 0).
        model_price: the hedge model's price V0 of the book at t = 0 (e.g. Black-Scholes),
            for comparison.
        strategy: the fitted strategy (the one given when steps = 0).
        history: `fit`'s `History` (None when steps = 0).
        n_paths: held-out paths the price was measured on.
    """

    __repr__ = module_repr

    price: jax.Array
    stderr: jax.Array
    risk_hedged: jax.Array
    risk_unhedged: jax.Array
    risk_zero: jax.Array
    unhedged_price: jax.Array
    model_price: jax.Array
    strategy: AbstractStrategy
    history: History | None
    n_paths: int = eqx.field(static=True)


def _short(book: Book) -> Book:
    """The same instruments with every quantity negated: the book sold."""
    return eqx.tree_at(lambda b: b.quantities, book, tuple(-q for q in book.quantities))


@eqx.filter_jit
def _risk_rows(rho: RiskMeasure, xs: jax.Array, cash: jax.Array) -> jax.Array:
    """rho(xs[i] + cash[i]) for each row i (one compiled program per risk measure and shape:
    `rho` is a static argument unless it is a module, e.g. an OCE's bound `infimum`)."""
    return jax.vmap(lambda x, c: rho(x + c))(xs, cash)


def _cash_roots(rho: RiskMeasure, xs: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """(c, found) per row of xs: the cash c with rho(x + c) = rho(0) (0: a zero P&L on as
    many paths), rho decreasing in cash, by bisection (rows side by side, on the host; each
    step one compiled evaluation of rho on every row).

    Bracket: for a monotone rho, x + c <= 0 on every path at c = -max x (rho >= rho(0)) and
    x + c >= 0 at c = -min x (rho <= rho(0)); it is widened (doubling, at most 64 times) for
    measures that are not monotone (e.g. mean-variance). Bisection runs until the midpoint
    rounds to an end in the working precision (at most 200 halvings). `found` is False for
    a row whose widened bracket holds no root (rho does not move with cash)."""
    dtype = np.dtype(xs.dtype)
    m = xs.shape[0]
    target = np.asarray(_risk_rows(rho, jnp.zeros_like(xs), jnp.zeros((m,), xs.dtype)), float)

    def f(c):
        return np.asarray(_risk_rows(rho, xs, jnp.asarray(c, xs.dtype)), float) - target

    lo = -np.asarray(jnp.max(xs, axis=1), float)
    hi = -np.asarray(jnp.min(xs, axis=1), float)
    width = np.maximum(hi - lo, np.maximum(np.abs(lo), 1.0))
    f_lo, f_hi = f(lo), f(hi)
    for i in range(64):
        low_ok, high_ok = f_lo >= 0, f_hi <= 0
        if np.all(low_ok & high_ok):
            break
        if not np.all(low_ok):
            lo = np.where(low_ok, lo, lo - width * 2.0**i)
            f_lo = f(lo)
        if not np.all(high_ok):
            hi = np.where(high_ok, hi, hi + width * 2.0**i)
            f_hi = f(hi)
    found = (f_lo >= 0) & (f_hi <= 0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        rounded = mid.astype(dtype)
        if np.all((rounded == lo.astype(dtype)) | (rounded == hi.astype(dtype)) | ~found):
            break
        above = f(mid) > 0
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return 0.5 * (lo + hi), found


def indifference_price(
    strategy: AbstractStrategy,
    risk_measure: RiskMeasure | OCE,
    model: AbstractModel,
    book: Book | AbstractInstrument,
    costs: AbstractCost | None,
    grid: TimeGrid,
    *,
    key: jax.Array,
    steps: int = 100,
    n_paths: int = 2**12,
    eval_paths: int = 2**16,
    hedge_model: AbstractModel | None = None,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float | optax.Schedule | None = None,
    clip_norm: float | None = None,
    unwind: bool = False,
    batches: int = 20,
    progress: bool = False,
    fit_options: dict[str, Any] | None = None,
) -> IndifferencePrice:
    """The seller's indifference price of `book`: sell it, fit `strategy` to hedge it, and
    find the premium that makes the hedged position no riskier than doing nothing
    (Buehler et al. 2019, section 4, eq. (4.1) with a zero initial position; pfhedge's
    `Hedger.price`).

    1. The hedger SELLS the book (its quantities negated) and `hj.fit` trains `strategy` to
       minimise rho of the hedged short book's P&L on `n_paths` fresh paths per step,
       `steps` steps, with key `split(key)[0]`. The objective is rho(X) with X the P&L
       without the premium (`hedge()` credits the seller V0 e^{rT}; it is taken back out),
       as pfhedge trains; an `OCE` is passed to `fit` as it is (it is then trained on the P&L
       with the premium, which only shifts its level w: an OCE is cash invariant).
    2. On `eval_paths` held-out paths (key `split(key)[1]`, which `fit` never sees), X is
       the hedged short book's terminal P&L without the premium (currency at T = the grid's
       end), and the price p (currency at t = 0) solves rho(X + p e^{rT}) = rho(0), rho(0)
       being rho of a zero P&L on as many paths, by bisection (to the working precision).
       For a cash-invariant rho, p = e^{-rT} (rho(X) - rho(0)). r is the world model's rate.

    Accuracy (measured on 2^17 held-out paths; tests/test_indifference.py): a short
    at-the-money call, Black-Scholes world (S = K = 100, sigma = 0.2, r = 0, T = 20/250),
    20 daily steps, no costs, entropic risk. The price exceeds the Black-Scholes price
    2.2565 by the risk premium of discrete hedging, about a Var(hedge error) / 2: with
    a = 1 (per currency) delta hedging gives 2.3550 +- 0.0016 (+0.0985, 4.4%) and
    `NeuralHedge` trained 200 steps on 2^13 paths (adam 1e-3) 2.3536 +- 0.0016; with
    a = 0.1, 2.2661 +- 0.0013 (+0.0096, 0.4%): the price approaches Black-Scholes as the
    aversion or the step shrinks. It rises with proportional costs (a = 1, trained): 2.354,
    2.528, 3.088 at rates 0, 1e-3, 5e-3 (delta hedging: 2.355, 2.553, 3.374).

    Args:
        strategy: the initial strategy (e.g. `hj.NeuralHedge(key)`); with steps = 0 it is
            used as it is (any strategy, e.g. `hj.DeltaHedge()`).
        risk_measure: rho, a function of an (n_paths,) P&L array returning a scalar to
            minimise (currency; e.g. `lambda x: hj.risk.entropic(x, 1.0)`,
            `lambda x: hj.risk.expected_shortfall(x, 0.99)`), or an `hj.risk.OCE` (priced
            with its exact infimum). It must decrease when cash is added (jit-compatible).
        model, book, costs, grid, hedge_model, unwind: as in `hedge()`; `book` is what is
            sold (e.g. `hj.EuropeanCall(100.0, 0.08)`: one call sold).
        key: a `jax.random` key.
        steps: optimisation steps of `fit` (>= 0; 0: no training).
        n_paths: paths per optimisation step.
        eval_paths: held-out paths for the price (>= 2 x batches).
        optimizer: an optax transformation (default `fit`'s: adam(1e-2)).
        learning_rate: shorthand for `optimizer=optax.adam(learning_rate)` (a number > 0
            or an optax schedule).
        clip_norm: clip gradients to this global norm (as in `fit`).
        batches: batches for the batch-means standard error.
        progress: `fit`'s progress bar.
        fit_options: further keyword arguments for `hj.fit`.

    Returns:
        An `IndifferencePrice`.

    Raises:
        ValueError: invalid arguments (naming them); both optimizer and learning_rate;
            a risk measure that does not move with cash (no root: e.g. the variance), or
            any error of `fit` / `hedge()`.

    Example:
        >>> import jax, hedgejax as hj
        >>> out = hj.indifference_price(
        ...     hj.DeltaHedge(), lambda x: hj.risk.entropic(x, 1.0), hj.BlackScholes(100.0, 0.2),
        ...     hj.EuropeanCall(100.0, 0.08), None, hj.TimeGrid(0.08, 20),
        ...     key=jax.random.key(0), steps=0, eval_paths=2**12)
        >>> bool(out.price > out.model_price)
        True
    """
    steps = check_int("steps", steps, 0)
    batches = check_int("batches", batches, 2)
    eval_paths = check_int("eval_paths", eval_paths, 1)
    if eval_paths < 2 * batches:
        raise ValueError(f"eval_paths must be >= 2 x batches = {2 * batches} (the standard "
                         f"error uses {batches} batch means of at least 2 paths each), got "
                         f"eval_paths={eval_paths}")
    if not isinstance(strategy, AbstractStrategy):
        raise ValueError(f"strategy must be an AbstractStrategy, got {type(strategy).__name__}")
    key = as_key(key)
    _check_fit_options(fit_options)
    if not callable(risk_measure):
        raise ValueError("risk_measure must be a function of a P&L array (e.g. lambda x: "
                         "hj.risk.entropic(x, 1.0)) or an hj.risk.OCE, got "
                         f"{risk_measure!r}")
    if learning_rate is not None:
        if not callable(learning_rate):     # a number; a callable is an optax schedule
            check_positive("learning_rate", learning_rate)
        if optimizer is not None:
            raise ValueError("give optimizer or learning_rate, not both")
        optimizer = optax.adam(learning_rate)
    if not isinstance(book, (Book, AbstractInstrument)):
        raise ValueError(f"book must be a Book or an instrument, got {type(book).__name__}")
    short = _short(as_book(book))
    growth = jnp.exp(jnp.asarray(model.rate) * grid.maturity)    # t = 0 -> T currency

    if isinstance(risk_measure, OCE):
        rho: RiskMeasure = risk_measure.infimum
        objective = risk_measure
    else:
        rho = risk_measure

        def objective(result):
            return rho(result.pnl + result.initial_price * growth)

    fit_key, eval_key = jax.random.split(key)
    history = None
    if steps > 0:
        strategy, history = fit(strategy, objective, model, short, costs, grid, key=fit_key,
                                optimizer=optimizer, steps=steps, n_paths=n_paths,
                                hedge_model=hedge_model, clip_norm=clip_norm, unwind=unwind,
                                progress=progress, **(fit_options or {}))

    result = hedge(model, short, strategy, costs, grid, eval_paths, eval_key,
                   hedge_model=hedge_model, unwind=unwind)
    premium = result.initial_price * growth            # V0 e^{rT} credited to the seller (< 0)
    x = result.pnl + premium                           # hedged, without the premium
    x_unhedged = result.unhedged_pnl + premium         # minus the payoff
    both = jnp.stack([x, x_unhedged])
    (cash, cash_u), found = _cash_roots(rho, both)
    per_batch = eval_paths // batches
    cash_b, found_b = _cash_roots(rho, x[:per_batch * batches].reshape(batches, per_batch))
    if not (np.all(found) and np.all(found_b)):
        raise ValueError("risk_measure does not change with cash added to the P&L (no premium "
                         "makes it equal to rho(0)): an indifference price needs a risk measure "
                         "that decreases with cash, e.g. entropic risk or expected shortfall, "
                         "not the variance")
    risk_x, risk_u = _risk_rows(rho, both, jnp.zeros((2,), x.dtype))
    zero = _risk_rows(rho, jnp.zeros_like(both), jnp.zeros((2,), x.dtype))[0]
    discount = 1.0 / growth
    stderr = np.std(cash_b, ddof=1) / np.sqrt(batches) * discount
    return IndifferencePrice(price=jnp.asarray(cash * discount, x.dtype),
                             stderr=jnp.asarray(stderr, x.dtype), risk_hedged=risk_x,
                             risk_unhedged=risk_u, risk_zero=zero,
                             unhedged_price=jnp.asarray(cash_u * discount, x.dtype),
                             model_price=-result.initial_price, strategy=strategy,
                             history=history, n_paths=eval_paths)


# fit's arguments that indifference_price sets itself
_SET_HERE = ("strategy", "objective", "model", "book", "costs", "grid", "key", "optimizer",
             "steps", "n_paths", "hedge_model", "clip_norm", "unwind", "progress")


def _check_fit_options(fit_options: Any) -> None:
    """fit_options: None or a dict of `fit`'s other keyword arguments, by name."""
    if fit_options is None:
        return
    if not isinstance(fit_options, dict):
        raise ValueError(f"fit_options must be None or a dict of hj.fit's keyword arguments, "
                         f"got {fit_options!r}")
    import inspect

    known = set(inspect.signature(fit).parameters) - set(_SET_HERE)
    for name in fit_options:
        if name in _SET_HERE:
            raise ValueError(f"fit_options must not set {name!r}: indifference_price takes it "
                             f"as its own argument")
        if name not in known:
            raise ValueError(f"fit_options has {name!r}, which is not an argument of hj.fit "
                             f"(allowed: {', '.join(sorted(known))})")
