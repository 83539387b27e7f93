"""exotic-hedging: how well shares hedge path-dependent options, and a variance swap with and
without its replicating strip.

A desk has SOLD `contracts` of each book and hedges it with shares to expiry (`maturity`,
rounded to whole trading days, 252 a year), paying `cost_rate` x |traded value| on every share
trade (`hj.Proportional`). Conventions of docs/architecture.md ("Conventions"): the user holds
the book (here short), bought at t0 at the hedge model's price V0; positions in shares; P&L in
time-T money ($ in the default config), > 0 a gain; ES at 95% is a positive loss; the
frictionless P&L (`hedge_error`) is the same trades without their costs.

1. Barriers, Black-Scholes world (vol `vol`, risk-neutral drift). A down-and-out call
   (strike `strike`, barrier `down_barrier`) and an up-and-out call (barrier `up_barrier`),
   both continuously monitored (`hj.Barrier`: the simulation draws each day's extremes from
   the Brownian bridge, so a knock-out between two closes is caught), hedged with the
   closed-form Black-Scholes delta (autodiff of the Reiner-Rubinstein price conditioned on
   the path's knocked flag):

   - delta every N trading days for N in `rebalance_days` (every 21, 5, 1: monthly, weekly,
     daily), the same paths for every frequency;
   - a no-trade band `hj.BandHedge(band_width x contracts)` checked daily;
   - `hj.NeuralHedge` (residual around delta: features log-moneyness, sqrt(time left), the
     position held and the book's delta) trained with `hj.fit` for `fit_steps` adam steps
     of `fit_paths` fresh paths on E[cost] + `lam` Var[hedge error]
     (`hj.risk.mean_cost_variance`), then evaluated on the common paths. Training is short
     on purpose: the policy starts at delta hedging (its output layer is zero), and what a
     few hundred gradient steps learn is what is measured;
   - unhedged, for scale.

   A vanilla call (same strike and maturity) hedged at the same frequencies is the
   reference: its frictionless std falls like 1 / sqrt(rebalances) (Derman-Kamal). How a
   barrier call compares depends on where its barrier is. The up-and-out call (barrier above
   the strike) is in the money at its barrier: its value falls from about barrier - strike to
   0 over a short distance, a large negative delta and gamma that discrete rebalancing misses
   (and a knock-out between two trades), so its hedge error is several times the vanilla's
   and falls much less with frequency. The down-and-out call (barrier below the strike,
   the default) goes to 0 smoothly at its barrier with little gamma; its delta there (about
   twice the vanilla's) drops to 0 at the knock-out, and its hedge error behaves like the
   vanilla's. The findings say which, from the run.

   One strategy type serves every row (`Rebalance`: every `every` steps the decision of a
   `BandHedge` or, where `neural` is set, of a `NeuralHedge`; held in between; `every`,
   `neural`, the band's width and the network's weights are array leaves), and the four
   Black-Scholes books are one `Book` whose quantities pick the book: every Black-Scholes
   row runs one compiled hedging loop. `Rebalance(BandHedge(0), policy, N)` decides exactly
   as `DeltaHedge(every=N)`, `Rebalance(BandHedge(w), policy, 1)` as `BandHedge(w)` and
   `Rebalance(band, policy, 1, neural=True)` as `policy`
   (tests/test_experiment_exotic.py).

2. An arithmetic Asian call (`asian_fixings` equally spaced fixings to maturity; the price is
   the moment-matched Turnbull-Wakeman / Levy price conditioned on the fixings so far, its
   delta by autodiff), delta hedged daily. As fixings accrue, the average is partly known
   and the delta dies: the run reports the mean |delta| over paths at several dates (and a
   vanilla's on the same paths). The frictionless mean measures how far the moment-matching
   V0 is from the true value (it is 0 for an exact price).

3. A variance swap in a Heston world (`v0`, `kappa`, `theta`, `xi`, `rho`; the defaults are
   workload W4 of docs/architecture.md), struck at the Heston fair variance K (so it costs 0),
   notional `varswap_notional` $ per unit of annual variance; the desk is short it:

   (a) delta hedged (hedge model Black-Scholes at the fair vol sqrt(K)): the swap's value
       does not depend on the spot, its delta is 0, no share is ever traded, and the whole
       variance risk stays;
   (b) with its replicating strip (Demeterfi, Derman, Kamal & Zou 1999, "More than you ever
       wanted to know about volatility swaps", Goldman Sachs QSR; J. Derivatives 6(4)): long
       notional x 2 dK / (T K^2) out-of-the-money options at each strike K of
       `strip_low`..`strip_high` every `strip_spacing` (puts below S*, calls above, half of
       each at S* = the strike nearest the forward), held to expiry, and the whole book
       delta hedged daily with Black-Scholes Greeks at the fair vol. The strip pays the log
       contract (2/T)((S_T - S*)/S* - log(S_T / S*)); its delta in the continuum limit is
       (2/T)(1/S* - 1/S) whatever the model, so the delta hedge is the dynamic 1/S leg of the
       log-contract replication and realised variance = strip payoff + hedge gains + constant
       (Ito on log S). What is left: the strike grid (the strip is a piecewise-linear
       approximation of the log payoff), its truncation to [strip_low, strip_high], daily
       rather than continuous rebalancing, and costs. The strip is bought at Black-Scholes
       prices at the fair vol (V0 of the hedge model); the log contract's value is the same
       under Heston (E[log S_T] depends only on the expected variance), so the difference
       from Heston prices is the strike grid's, not the model's.

Figures: P&L histograms of the barrier strategies; delta and gamma of both barrier calls
against spot near the barriers (autodiff of `hj.price` under `jax.vmap`, a few times to
expiry); one simulated path that knocks the down-and-out call out, with the daily and weekly
hedge positions along it (`hj.simulate` for the path, the closed-form delta along it); the
Asian's mean |delta| over time; the variance swap's P&L with and without the strip, and the
strip's quantities by strike.

Run time: compiling dominates (one hedging loop for every Black-Scholes row, one per neural
fit, one for the Heston book, one per Greek function); with the defaults about 1.5 minutes on
a shared 2-core CPU (93 s measured, the two fits about 55 s of it), about 40 s with
`neural = false`.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from typing import Any

import numpy as np

from ._common import (
    cost_phrase,
    daily_grid,
    figure,
    histograms,
    plural,
    stats_row,
    unhedged_result,
)
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "exotic-hedging"
QUESTION = ("How well do shares hedge path-dependent options: barrier calls near their "
            "barriers (delta at several frequencies, a no-trade band, a neural policy, with "
            "costs), an Asian call as its average accrues, and a variance swap with and "
            "without its replicating strip of options?")
# paths >= 100: the findings compare stds and 95% tails of the strategies
BOUNDS = {"paths": AtLeast(100), "contracts": Positive(), "spot": Positive(),
          "vol": Positive(), "rate": Between(-0.5, 0.5), "maturity": Positive(),
          "strike": Positive(), "down_barrier": Positive(), "up_barrier": Positive(),
          "cost_rate": Between(0.0, 0.1, closed=True), "rebalance_days": AtLeast(1),
          "band_width": NonNegative(), "lam": Positive(), "fit_steps": AtLeast(1),
          "fit_paths": AtLeast(16), "learning_rate": Positive(), "hidden": AtLeast(1),
          "depth": AtLeast(0), "asian_fixings": AtLeast(1), "v0": NonNegative(),
          "kappa": Positive(), "theta": NonNegative(), "xi": Positive(),
          "rho": Between(-1.0, 1.0, closed=True), "varswap_notional": Positive(),
          "strip_low": Positive(), "strip_high": Positive(), "strip_spacing": Positive()}

ALPHA = 0.95          # the table's VaR / ES level
MAX_STRIKES = 400     # strikes of the strip (each is priced on every path and step)
PLOT_PATHS = 2048     # paths simulated for the Asian's delta and the knock-out path

BOOKS = ("down-and-out call", "up-and-out call", "vanilla call", "Asian call")
# the table's "book" column (short enough that a row fits one line at 80 columns)
LABELS = {"down-and-out call": "down-and-out", "up-and-out call": "up-and-out",
          "vanilla call": "vanilla call", "Asian call": "Asian call",
          "variance swap": "variance swap", "var swap + strip": "var swap+strip"}


@functools.lru_cache(maxsize=1)
def rebalance_class():
    """The `Rebalance` strategy type (built on first use: hedgejax is imported lazily)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import hedgejax as hj

    class Rebalance(hj.AbstractStrategy):
        """Every `every` steps (steps 0, every, 2 every, ...) the decision of `band` (a
        `hj.BandHedge`: trade to within its width of -delta), or of `policy` (a
        `hj.NeuralHedge`) where `neural` is true; the position held in between.

        `Rebalance(BandHedge(0.0), policy, every=N)` decides exactly as
        `hj.DeltaHedge(every=N)`, `Rebalance(BandHedge(w), policy, 1)` as `BandHedge(w)`,
        and `Rebalance(band, policy, 1, neural=True)` as `policy`. `every` and `neural` are
        array leaves, not static fields: every frequency, band and policy (with networks of
        one shape) runs the same compiled hedging loop, compiled once per run."""

        band: hj.BandHedge
        policy: hj.NeuralHedge
        every: jax.Array = eqx.field(converter=lambda x: jnp.asarray(x, jnp.int32))
        neural: jax.Array = eqx.field(converter=lambda x: jnp.asarray(x, bool),
                                      default=False)

        def __call__(self, obs, position):
            band = self.band(obs, position)
            target = jnp.where(self.neural, self.policy(obs, position).astype(band.dtype),
                               band)
            return jnp.where(obs.step % self.every == 0, target, position)

    return Rebalance


def _row(book: str, label: str, res, lam: float) -> dict[str, Any]:
    """The table row of one hedge: the standard statistics at 95%, then the frictionless
    mean (and its distance from 0 in standard errors), std and the training objective."""
    err = np.asarray(res.hedge_error, dtype=np.float64)
    cost = np.asarray(res.cost, dtype=np.float64)
    row = {"book": LABELS[book], **stats_row(label, res, alpha=ALPHA)}
    se = float(np.std(err, ddof=1) / math.sqrt(err.size))
    row["mean_frictionless"] = float(np.mean(err))
    row["z_frictionless_vs_0"] = row["mean_frictionless"] / se if se > 0 else 0.0
    row["std_frictionless"] = float(np.std(err, ddof=1))
    row["objective"] = float(np.mean(cost) + lam * np.var(err, ddof=1))
    return row


def _days_label(days: int) -> str:
    return "delta daily" if days == 1 else f"delta every {days}d"


def _delta_gamma_fn(model, inst, stateful: bool = True, second: bool = True):
    """A jitted, vmapped (spot, t, state) -> (delta, gamma) of `inst` under `model`: first
    and (with `second`; else 0) second autodiff derivatives of `hj.price` in the spot, at
    the given path state."""
    import jax
    import jax.numpy as jnp

    import hedgejax as hj

    def value(s, t, state):
        return hj.price(model, inst, s, t, state=state if stateful else None)

    delta = jax.grad(value)
    gamma = jax.grad(delta) if second else (lambda s, t, st: jnp.zeros_like(s))
    return jax.jit(jax.vmap(lambda s, t, st: (delta(s, t, st), gamma(s, t, st))))


def _strip(cfg: dict[str, Any], maturity: float, forward: float):
    """Strikes, instruments and quantities (per unit of variance notional) of the DDKZ strip:
    2 dK / (T K^2) of the out-of-the-money option at each strike, half a put and half a call
    at S*, the strike nearest the forward."""
    import hedgejax as hj

    low, high, dk = cfg["strip_low"], cfg["strip_high"], cfg["strip_spacing"]
    if not low < forward:
        raise ValueError(f"config key 'strip_low' must be below the forward {forward:.4g} (the "
                         f"strip has puts below it), got {low:g}")
    if not forward < high:
        raise ValueError(f"config key 'strip_high' must be above the forward {forward:.4g} "
                         f"(the strip has calls above it), got {high:g}")
    count = int(math.floor((high - low) / dk + 1e-9)) + 1
    if count < 3 or count > MAX_STRIKES:
        raise ValueError(f"config key 'strip_spacing' must give 3 to {MAX_STRIKES} strikes "
                         f"between strip_low and strip_high, got {count}")
    strikes = low + dk * np.arange(count)
    s_star = float(strikes[np.argmin(np.abs(strikes - forward))])
    instruments, weights, kinds = [], [], []
    for k in strikes:
        w = 2.0 * dk / (maturity * k * k)
        if k < s_star:
            instruments.append(hj.EuropeanPut(float(k), maturity))
            weights.append(w)
            kinds.append("put")
        elif k > s_star:
            instruments.append(hj.EuropeanCall(float(k), maturity))
            weights.append(w)
            kinds.append("call")
        else:
            instruments += [hj.EuropeanPut(float(k), maturity),
                            hj.EuropeanCall(float(k), maturity)]
            weights += [0.5 * w, 0.5 * w]
            kinds += ["put", "call"]
    strike_list = [float(i.strike) for i in instruments]
    return strikes, s_star, instruments, np.asarray(weights), kinds, strike_list


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax
    import optax

    import hedgejax as hj

    spot, strike, rate, vol = cfg["spot"], cfg["strike"], cfg["rate"], cfg["vol"]
    contracts, lam = cfg["contracts"], cfg["lam"]
    if not cfg["down_barrier"] < spot:
        raise ValueError(f"config key 'down_barrier' must be below spot ({spot:g}): the "
                         f"down-and-out call would be dead at t0, got {cfg['down_barrier']:g}")
    if not cfg["up_barrier"] > spot:
        raise ValueError(f"config key 'up_barrier' must be above spot ({spot:g}): the "
                         f"up-and-out call would be dead at t0, got {cfg['up_barrier']:g}")
    grid = daily_grid(cfg["maturity"])
    n_steps, T = grid.n_steps, grid.maturity
    days = list(dict.fromkeys(sorted(cfg["rebalance_days"], reverse=True)))
    if days[0] > n_steps:
        raise ValueError(f"config key 'rebalance_days' must be at most the {n_steps} trading "
                         f"days to maturity, got {days[0]}")
    if n_steps % cfg["asian_fixings"]:
        raise ValueError(f"config key 'asian_fixings' must divide the {n_steps} trading days "
                         f"to maturity (fixings on hedging dates), got {cfg['asian_fixings']}")
    key, n = ctx.key, cfg["paths"]
    eval_key, train_key = jax.random.fold_in(key, 1), jax.random.fold_in(key, 0)
    costs = hj.Proportional(cfg["cost_rate"])
    world = hj.BlackScholes(spot, vol, rate)
    Rebalance = rebalance_class()  # noqa: N806 - a class

    # ---------------------------------------------------------------- Heston world, strip
    # (set up first: its config checks come before anything is compiled)
    with warnings.catch_warnings():
        # The W4 parameters fail Feller on purpose (variance touches zero); that is allowed.
        warnings.simplefilter("ignore", hj.FellerWarning)
        heston = hj.Heston(spot=spot, v0=cfg["v0"], kappa=cfg["kappa"], theta=cfg["theta"],
                           xi=cfg["xi"], rho=cfg["rho"], rate=rate)
    growth = math.exp(rate * T)
    fair_var = float(hj.price(heston, hj.VarianceSwap(T, 0.0, 1.0))) * growth
    fair_vol = math.sqrt(max(fair_var, 0.0))
    if fair_vol <= 0:
        raise ValueError("config keys 'v0' and 'theta' give a fair variance of 0: nothing to "
                         "hedge")
    notional = cfg["varswap_notional"] * contracts
    swap = hj.VarianceSwap(T, fair_vol, notional)
    forward = spot * growth
    strikes, s_star, strip_insts, weights, kinds, strip_strikes = _strip(cfg, T, forward)
    bs_fair = hj.BlackScholes(spot, fair_vol, rate)
    strip_value = float(hj.price(bs_fair, hj.Book(strip_insts, quantities=list(weights))))

    # ---------------------------------------------------------------- Black-Scholes books
    doc = hj.Barrier(strike, cfg["down_barrier"], T, kind="down-and-out")
    uoc = hj.Barrier(strike, cfg["up_barrier"], T, kind="up-and-out")
    call = hj.EuropeanCall(strike, T)
    asian = hj.Asian(strike, T, fixings=cfg["asian_fixings"])
    instruments = [doc, uoc, call, asian]

    def book_of(name: str):
        """The common four-instrument book holding only `name` (short `contracts`)."""
        return hj.Book(instruments, quantities=[-contracts if b == name else 0.0
                                                for b in BOOKS])

    # ---------------------------------------------------------------- neural policies
    def new_policy(i: int):
        return hj.NeuralHedge(jax.random.fold_in(key, 4 + i), hidden=cfg["hidden"],
                              depth=cfg["depth"], reference=strike, book_scale=contracts)

    histories, policies = {}, {}
    if cfg["neural"]:
        schedule = optax.cosine_decay_schedule(cfg["learning_rate"], cfg["fit_steps"])
        for i, (b, inst) in enumerate(ctx.track(list(zip(BOOKS[:2], (doc, uoc),
                                                         strict=True)), "training")):
            policies[b], histories[b] = hj.fit(
                new_policy(i), hj.risk.mean_cost_variance(lam=lam), world,
                hj.Book([inst], quantities=[-contracts]), costs, grid, key=train_key,
                optimizer=optax.adam(schedule), steps=cfg["fit_steps"],
                n_paths=cfg["fit_paths"], progress=ctx.progress and sys.stderr.isatty())

    # ---------------------------------------------------------------- hedging, one loop
    width = cfg["band_width"] * contracts
    band_label = f"band +/-{cfg['band_width']:g} daily"
    idle = new_policy(0)    # the policy slot of the rows that do not use it
    delta = hj.BandHedge(0.0)
    runs = []   # (book, strategy label, strategy)
    for b in BOOKS[:3]:
        runs += [(b, _days_label(d), Rebalance(delta, idle, d)) for d in days]
        if b != "vanilla call":
            runs.append((b, band_label, Rebalance(hj.BandHedge(width), idle, 1)))
        if b in policies:
            runs.append((b, "neural (fitted)", Rebalance(delta, policies[b], 1, True)))
    runs.append(("Asian call", "delta daily", Rebalance(delta, idle, 1)))
    results: dict[tuple[str, str], Any] = {}
    for b, label, strategy in ctx.track(runs, "hedging (Black-Scholes books)"):
        results[b, label] = hj.hedge(world, book_of(b), strategy, costs, grid, n, eval_key)

    # ---------------------------------------------------------------- variance swap hedges
    vs_results = {}
    for label, with_strip in ctx.track([("variance swap", False), ("var swap + strip", True)],
                                       "hedging (Heston variance swap)"):
        qty = [-1.0] + list(notional * weights * (1.0 if with_strip else 0.0))
        vs_results[label] = hj.hedge(heston, hj.Book([swap] + strip_insts, quantities=qty),
                                     Rebalance(delta, idle, 1), costs, grid, n,
                                     jax.random.fold_in(key, 2), hedge_model=bs_fair)

    # ---------------------------------------------------------------- the table
    entries = []   # (book, strategy label, result)
    for b in BOOKS:
        mine = [(label, res) for (bb, label), res in results.items() if bb == b]
        if b != "vanilla call":
            entries.append((b, "unhedged", unhedged_result(mine[0][1])))
        entries += [(b, label, res) for label, res in mine]
    entries += [("variance swap", "delta daily", vs_results["variance swap"]),
                ("var swap + strip", "static strip only",
                 unhedged_result(vs_results["var swap + strip"])),
                ("var swap + strip", "delta daily", vs_results["var swap + strip"])]
    table = [_row(b, label, res, lam) for b, label, res in entries]
    rows = {(b, label): r for (b, label, _), r in zip(entries, table, strict=True)}

    # ---------------------------------------------------------------- Greeks and paths
    g = _greeks_and_paths(cfg, world, grid, doc, uoc, call, asian, key, n)

    # ---------------------------------------------------------------- findings
    findings = _findings(cfg, rows, days, n_steps, band_label, histories, g, fair_var,
                         strip_value, s_star, strikes, notional, width)
    caption = (
        f"A desk short {plural(contracts, 'option')} of each book (strike {strike:g}, "
        f"{plural(T, 'year')}: down-and-out call at {cfg['down_barrier']:g}, up-and-out call "
        f"at {cfg['up_barrier']:g}, vanilla call, Asian call on {cfg['asian_fixings']} "
        f"fixings) in a Black-Scholes world at {vol:.0%} vol, hedged with shares at "
        f"closed-form Black-Scholes deltas; and short a variance swap (${notional:,.0f} per "
        f"unit of variance, struck at the fair {fair_vol:.2%} vol) in a Heston world, "
        f"alone or with its strip of {len(strip_insts)} options, delta hedged at "
        f"{fair_vol:.1%}. Share trades {cost_phrase(cfg['cost_rate'])}; {n:,} paths per "
        f"row. Money in $ at expiry; P&L > 0 is a gain; 95% VaR and ES are positive losses.")
    headers = {"book": "book (short)", "mean_frictionless": "mean before costs ($)",
               "z_frictionless_vs_0": "z of mean before costs vs 0",
               "std_frictionless": "std before costs ($)",
               "objective": f"E[cost] + {lam:g} Var before costs ($)",
               "p95_pnl": "95th pct P&L ($)"}
    figures = {"barrier_pnl": _pnl_figure(cfg, results, days, band_label),
               "barrier_greeks": _greeks_figure(cfg, g, T),
               "knockout_path": _path_figure(cfg, g),
               "asian_delta": _asian_figure(cfg, g),
               "variance_swap": _varswap_figure(vs_results, strip_strikes, kinds,
                                                notional * weights, s_star)}
    out_results = {
        "maturity_years": T, "trading_days": n_steps,
        "initial_prices": {f"{b} / {label}": float(res.initial_price)
                           for (b, label), res in results.items() if label.startswith("delta")},
        "varswap": {"fair_variance": fair_var, "fair_vol": fair_vol, "notional": notional,
                    "strip_value_bs_per_unit_notional": strip_value, "s_star": s_star,
                    "strikes": strikes, "quantities_per_unit_notional": weights,
                    "kinds": kinds},
        "asian_mean_abs_delta": g["asian_by_day"], "vanilla_mean_abs_delta":
            g["vanilla_by_day"],
        "greeks_near_barriers": g["extremes"],
        "knockout_path": {"index": g["path_index"], "knockout_day": g["ko_day"]},
        "training": {b: {"objective": h.objective} for b, h in histories.items()},
    }
    return Outcome(
        table=table, findings=findings, results=out_results, figures=figures,
        caption=caption, headers=headers,
        title="hedging exotics with shares: barriers, an Asian and a variance swap",
        display=["book", "strategy", "mean_pnl", "std_pnl", f"es_{ALPHA:g}", "mean_cost",
                 "mean_trades"])


def _greeks_and_paths(cfg, world, grid, doc, uoc, call, asian, key, n_paths) -> dict:
    """Delta and gamma of both barriers against spot at three times to expiry; one simulated
    path that knocks the down-and-out call out, with the hedge positions along it; the mean
    |delta| of the Asian and the vanilla call over time on simulated paths."""
    import jax
    import jax.numpy as jnp

    import hedgejax as hj

    T, n_steps = grid.maturity, grid.n_steps
    lo_b, hi_b = cfg["down_barrier"], cfg["up_barrier"]
    spots = np.linspace(lo_b - 0.5 * (cfg["spot"] - lo_b), hi_b + 0.15 * (hi_b - cfg["spot"]),
                        241)
    taus = [T, T / 3.0, T / 12.0]
    times = np.concatenate([np.full(spots.size, T - tau) for tau in taus])
    grid_spots = np.tile(spots, len(taus))

    # the paths: one that knocks out, and the Asian's and vanilla's deltas over time
    m = min(n_paths, PLOT_PATHS)
    paths = np.asarray(hj.simulate(world, grid, m, jax.random.fold_in(key, 3)), dtype=float)
    t_grid = np.asarray(grid.times, dtype=float)
    below = paths <= lo_b
    knocked = np.maximum.accumulate(below, axis=1)
    ko_day = np.where(knocked[:, -1], np.argmax(below, axis=1), -1)
    if np.any(ko_day > 0):
        candidates = np.flatnonzero(ko_day > 0)
        idx = int(candidates[np.argmin(np.abs(ko_day[candidates] - n_steps / 2))])
    else:   # no path knocks out on its daily closes: the one that came closest
        idx = int(np.argmin(paths.min(axis=1)))
    path = paths[idx]

    # down-and-out: the Greek grid and the chosen path in one call
    doc_fn = _delta_gamma_fn(world, doc)
    s_all = np.concatenate([grid_spots, path[:-1]])
    t_all = np.concatenate([times, t_grid[:-1]])
    k_all = np.concatenate([doc.beyond(jnp.log(grid_spots)), knocked[idx, :-1]])
    d_doc, g_doc = (np.asarray(x, dtype=float) for x in doc_fn(
        jnp.asarray(s_all), jnp.asarray(t_all), {"knocked": jnp.asarray(k_all)}))
    uoc_fn = _delta_gamma_fn(world, uoc)
    d_uoc, g_uoc = (np.asarray(x, dtype=float) for x in uoc_fn(
        jnp.asarray(grid_spots), jnp.asarray(times),
        {"knocked": uoc.beyond(jnp.log(jnp.asarray(grid_spots)))}))
    k = grid_spots.size
    shape = (len(taus), spots.size)
    doc_greeks = (d_doc[:k].reshape(shape), g_doc[:k].reshape(shape))
    uoc_greeks = (d_uoc.reshape(shape), g_uoc.reshape(shape))
    path_delta = d_doc[k:]

    # the Asian's path state: the sum of the fixings so far (dates every `per` steps)
    per = n_steps // cfg["asian_fixings"]
    fixing = np.zeros(n_steps + 1, dtype=bool)
    fixing[per::per] = True
    totals = np.cumsum(np.where(fixing, paths, 0.0), axis=1)
    s_flat = paths[:, :-1].ravel()
    t_flat = np.tile(t_grid[:-1], m)
    asian_fn = _delta_gamma_fn(world, asian, second=False)
    d_asian = np.asarray(asian_fn(jnp.asarray(s_flat), jnp.asarray(t_flat),
                                  {"total": jnp.asarray(totals[:, :-1].ravel())})[0],
                         dtype=float).reshape(m, n_steps)
    # the vanilla on the same paths, and at the spot just above the down barrier at t0
    above = float(spots[spots > lo_b][0])
    call_fn = _delta_gamma_fn(world, call, stateful=False, second=False)
    d_call = np.asarray(call_fn(jnp.asarray(np.append(s_flat, above)),
                                jnp.asarray(np.append(t_flat, 0.0)),
                                jnp.zeros(s_flat.size + 1))[0], dtype=float)
    call_above = float(d_call[-1])
    d_call = d_call[:-1].reshape(m, n_steps)
    mean_abs_asian = np.mean(np.abs(d_asian), axis=0)
    mean_abs_call = np.mean(np.abs(d_call), axis=0)
    checkpoints = sorted({0, n_steps // 4, n_steps // 2, (3 * n_steps) // 4, n_steps - 1})

    # where the Greeks peak near the barriers, at the shortest time to expiry
    short = len(taus) - 1
    live_doc = spots > lo_b
    live_uoc = spots < hi_b
    extremes = {
        "doc_spot_above_barrier": above,
        "doc_delta_above_barrier_t0": float(doc_greeks[0][0][live_doc][0]),
        "vanilla_delta_there_t0": call_above,
        "short_time_to_expiry_years": taus[short],
        "uoc_min_delta": float(uoc_greeks[0][short][live_uoc].min()),
        "uoc_min_delta_spot": float(spots[live_uoc][np.argmin(uoc_greeks[0][short][live_uoc])]),
        "uoc_min_gamma": float(uoc_greeks[1][short][live_uoc].min()),
        "uoc_max_delta": float(uoc_greeks[0][short][live_uoc].max())}
    return {"spots": spots, "taus": taus, "doc": doc_greeks, "uoc": uoc_greeks,
            "path": path, "path_index": idx, "ko_day": int(ko_day[idx]),
            "path_knocked": knocked[idx], "path_delta": path_delta, "t_grid": t_grid,
            "mean_abs_asian": mean_abs_asian, "mean_abs_call": mean_abs_call,
            "asian_p10": np.percentile(np.abs(d_asian), 10, axis=0),
            "asian_p90": np.percentile(np.abs(d_asian), 90, axis=0),
            "asian_by_day": {str(d): float(mean_abs_asian[d]) for d in checkpoints},
            "vanilla_by_day": {str(d): float(mean_abs_call[d]) for d in checkpoints},
            "extremes": extremes, "plot_paths": m, "n_steps": n_steps}


def _findings(cfg, rows, days, n_steps, band_label, histories, g, fair_var, strip_value,
              s_star, strikes, notional, width) -> list[str]:
    findings = []
    coarse, fine = days[0], days[-1]
    if coarse != fine:
        n_coarse, n_fine = math.ceil(n_steps / coarse), math.ceil(n_steps / fine)
        van = (rows["vanilla call", _days_label(coarse)]["std_frictionless"]
               / rows["vanilla call", _days_label(fine)]["std_frictionless"])
        parts = []
        for b in BOOKS[:2]:
            hi = rows[b, _days_label(coarse)]["std_frictionless"]
            lo = rows[b, _days_label(fine)]["std_frictionless"]
            rel = hi / lo / van
            word = ("less than" if rel < 0.9 else "more than" if rel > 1.1
                    else "about as much as")
            parts.append(f"the {b}'s from {hi:.3f} to {lo:.3f} (x{hi / lo:.2f}, {word} "
                         f"the vanilla's)")
        often = "daily" if fine == 1 else f"every {fine} trading days"
        findings.append(
            f"Rebalancing {often} instead of every {coarse} trading days "
            f"({n_fine} instead of {n_coarse} rebalances) cuts the vanilla call's hedge-error "
            f"std (before costs) by x{van:.2f} (1/sqrt(rebalances) predicts "
            f"x{math.sqrt(n_fine / n_coarse):.2f}), " + " and ".join(parts) + ".")
        for b, barrier in zip(BOOKS[:2], (cfg["down_barrier"], cfg["up_barrier"]),
                              strict=True):
            intrinsic = max(barrier - cfg["strike"], 0.0)
            ratio = (rows[b, _days_label(coarse)]["std_frictionless"]
                     / rows[b, _days_label(fine)]["std_frictionless"])
            vs_vanilla = (rows[b, _days_label(fine)]["std_frictionless"]
                          / rows["vanilla call", _days_label(fine)]["std_frictionless"])
            if intrinsic > 0:
                why = (f"the call is {intrinsic:g} in the money at its barrier, so its value "
                       f"falls from about {intrinsic:g} to 0 over a short distance: a large "
                       f"delta of the wrong sign and a large gamma that discrete rebalancing "
                       f"misses, and a knock-out between two trades")
            else:
                why = ("its barrier is out of the money, where the value goes to 0 smoothly "
                       "with little gamma; what changes is the hedge sold at the knock-out")
            findings.append(
                f"{b.capitalize()} (barrier {barrier:g}, strike {cfg['strike']:g}): {why}; "
                f"its hedge-error std with {_days_label(fine)} is {vs_vanilla:.2f} x the "
                f"vanilla's, and rebalancing {n_fine / n_coarse:.0f} x more often "
                f"divides it by {ratio:.2f} (the vanilla's: {van:.2f}).")
    fine_label = _days_label(fine)
    for b in BOOKS[:2]:
        band, delta = rows[b, band_label], rows[b, fine_label]
        if delta["mean_cost"] > 0:
            findings.append(
                f"{b.capitalize()}: the no-trade band (+/-{width:g} shares, checked daily) "
                f"costs {band['mean_cost']:.4f} against {delta['mean_cost']:.4f} for "
                f"{fine_label} ({1 - band['mean_cost'] / delta['mean_cost']:.0%} "
                f"{'saved' if band['mean_cost'] < delta['mean_cost'] else 'more'}, "
                f"{band['mean_trades']:.1f} trades a path instead of "
                f"{delta['mean_trades']:.1f}); its P&L std is {band['std_pnl']:.3f} against "
                f"{delta['std_pnl']:.3f} and its 95% ES {band['es_0.95']:.3f} against "
                f"{delta['es_0.95']:.3f}.")
    for b, h in histories.items():
        nn, delta, band = (rows[b, "neural (fitted)"], rows[b, fine_label],
                           rows[b, band_label])
        last = max(1, h.objective.size // 10)
        best = min((nn, delta, band), key=lambda r: r["objective"])
        findings.append(
            f"{b.capitalize()}: hj.NeuralHedge trained for {h.objective.size} adam steps "
            f"({cfg['fit_paths']:,} fresh paths each; training objective "
            f"{np.mean(h.objective[:last]):.4f} -> {np.mean(h.objective[-last:]):.4f}) scores "
            f"E[cost] + {cfg['lam']:g} Var = {nn['objective']:.4f} on the common paths, "
            f"against {delta['objective']:.4f} for {fine_label} and {band['objective']:.4f} "
            f"for the band (best: {best['strategy']}); cost {nn['mean_cost']:.4f}, std "
            f"{nn['std_pnl']:.3f}.")
    exact = [r for (b, _), r in rows.items() if b in BOOKS[:3] and r["strategy"] != "unhedged"]
    worst = max(exact, key=lambda r: abs(r["z_frictionless_vs_0"]))
    findings.append(
        f"Frictionless means are 0 in theory for the barrier and vanilla rows (exact prices, "
        f"the hedge model is the world, risk-neutral drift); the largest deviation is "
        f"{worst['book']} / {worst['strategy']}: {worst['mean_frictionless']:+.4f}, "
        f"{worst['z_frictionless_vs_0']:+.1f} standard errors.")
    ex = g["extremes"]
    findings.append(
        f"Closed-form Greeks near the barriers: at t0, just above its barrier (spot "
        f"{ex['doc_spot_above_barrier']:.2f}) the down-and-out call's delta is "
        f"{ex['doc_delta_above_barrier_t0']:.3f} against the vanilla's "
        f"{ex['vanilla_delta_there_t0']:.3f}, and it drops to 0 at the knock-out (the hedge "
        f"sells those shares at once); {ex['short_time_to_expiry_years'] * 252:.0f} trading "
        f"days before expiry the up-and-out call's delta runs from "
        f"{ex['uoc_max_delta']:+.2f} to {ex['uoc_min_delta']:+.2f} (at spot "
        f"{ex['uoc_min_delta_spot']:.1f}) with gamma down to {ex['uoc_min_gamma']:.3f} per $: "
        f"its hedge flips from long to short shares as spot nears the barrier.")
    by_day = g["asian_by_day"]
    first, last_day = min(by_day, key=int), max(by_day, key=int)
    a_un, a_dh = rows["Asian call", "unhedged"], rows["Asian call", "delta daily"]
    findings.append(
        "The Asian call's mean |delta| dies as fixings accrue: "
        + ", ".join(f"{v:.3f} on day {d}" for d, v in by_day.items())
        + f" ({by_day[last_day] / by_day[first]:.0%} of the start; the vanilla's on the same "
        f"paths: {g['vanilla_by_day'][first]:.3f} -> {g['vanilla_by_day'][last_day]:.3f}). "
        f"Daily delta hedging cuts its P&L std from {a_un['std_pnl']:.3f} to "
        f"{a_dh['std_pnl']:.3f}; the frictionless mean {a_dh['mean_frictionless']:+.4f} "
        f"({a_dh['z_frictionless_vs_0']:+.1f} SE) measures the moment-matching price's "
        f"error.")
    vs = rows["variance swap", "delta daily"]
    st_un = rows["var swap + strip", "static strip only"]
    st = rows["var swap + strip", "delta daily"]
    findings.append(
        f"Variance swap in the Heston world (fair variance {fair_var:.5f}, vol "
        f"{math.sqrt(fair_var):.2%}): its delta is 0, so delta hedging trades "
        f"{vs['mean_trades']:.0f} shares and leaves the whole variance risk, P&L std "
        f"{vs['std_pnl']:,.2f} (95% ES {vs['es_0.95']:,.2f}). With the strip and its daily "
        f"delta hedge the std before costs is {st['std_frictionless']:,.2f} "
        f"({st['std_frictionless'] / vs['std_frictionless']:.1%} of it) and after costs "
        f"{st['std_pnl']:,.2f} ({st['std_pnl'] / vs['std_pnl']:.1%}; mean cost "
        f"{st['mean_cost']:,.2f}); the static strip without the 1/S leg leaves "
        f"{st_un['std_pnl']:,.2f}.")
    extra = (strip_value - fair_var) * notional
    findings.append(
        f"The strip ({strikes.size} strikes {strikes[0]:g}-{strikes[-1]:g}, S* = {s_star:g}) "
        f"costs {strip_value:.5f} per unit of notional at Black-Scholes prices at the fair "
        f"vol, against the log contract's (2/T) E[(S_T - S*)/S* - log(S_T/S*)] = fair "
        f"variance {fair_var:.5f}: the discrete strip pays slightly "
        f"{'more' if extra >= 0 else 'less'} than the log contract it approximates, and "
        f"costs {abs(extra):,.2f} {'more' if extra >= 0 else 'less'} on the book's notional.")
    return findings


# ---------------------------------------------------------------------------- figures

STRATEGY_COLORS = ["tab:red", "tab:orange", "tab:blue", "tab:green", "tab:purple"]


def _pnl_figure(cfg, results, days, band_label):
    fig, ax = figure(ncols=2, size=(12.0, 4.4))
    for j, (b, barrier) in enumerate(zip(BOOKS[:2], (cfg["down_barrier"], cfg["up_barrier"]),
                                         strict=True)):
        samples = {label: res.pnl for (bb, label), res in results.items() if bb == b}
        ax[0, j].set_prop_cycle(color=STRATEGY_COLORS[:len(samples)])
        histograms(ax[0, j], samples, xlabel="P&L at expiry, after costs ($)",
                   clip=(0.5, 99.5))
        ax[0, j].set_title(f"short {b} K={cfg['strike']:g}, H={barrier:g}: P&L by hedge",
                           fontsize=10)
    return fig


def _greeks_figure(cfg, g, T):
    fig, ax = figure(ncols=2, nrows=2, size=(11.5, 8.0))
    spots = g["spots"]
    for i, (name, barrier) in enumerate((("down-and-out call", cfg["down_barrier"]),
                                         ("up-and-out call", cfg["up_barrier"]))):
        greeks = g["doc" if i == 0 else "uoc"]
        for j, label in enumerate(("delta (shares per option)",
                                   "gamma (shares per option per $)")):
            a = ax[i, j]
            live = spots > barrier if i == 0 else spots < barrier
            for tau, values in zip(g["taus"], greeks[j], strict=True):
                # the knocked-out side apart: the delta jumps to 0 at the barrier
                line, = a.plot(spots[live], values[live],
                               label=f"{tau * 252:.0f} trading days to expiry")
                a.plot(spots[~live], values[~live], color=line.get_color())
            a.axvline(barrier, color="k", linestyle="--", linewidth=1,
                      label=f"barrier {barrier:g}")
            a.axvline(cfg["strike"], color="tab:gray", linestyle=":", linewidth=1,
                      label=f"strike {cfg['strike']:g}")
            a.axhline(0.0, color="k", linewidth=0.5)
            a.set_xlabel("spot ($)")
            a.set_ylabel(label)
            a.set_title(f"{name}: {label.split()[0]} (Black-Scholes {cfg['vol']:.0%}, "
                        f"autodiff)", fontsize=10)
            a.legend(fontsize=7)
    return fig


def _path_figure(cfg, g):
    fig, ax = figure(nrows=2, size=(8.0, 6.5))
    path, n_steps = g["path"], g["n_steps"]
    day = np.arange(n_steps + 1)
    top, bottom = ax[0, 0], ax[1, 0]
    top.plot(day, path, color="tab:blue", label="spot (daily closes)")
    top.axhline(cfg["down_barrier"], color="k", linestyle="--", linewidth=1,
                label=f"barrier {cfg['down_barrier']:g}")
    top.axhline(cfg["strike"], color="tab:gray", linestyle=":", linewidth=1,
                label=f"strike {cfg['strike']:g}")
    ko = g["ko_day"]
    if ko > 0:
        top.plot([ko], [path[ko]], "x", color="tab:red", markersize=10,
                 label=f"knocked out on day {ko} (first close at or below)")
        title = "a simulated path that knocks the down-and-out call out"
    else:
        title = "the simulated path closest to the barrier (no knock-out on a close)"
    top.set_ylabel("spot ($)")
    top.set_xlabel("trading day")
    top.set_title(title, fontsize=10)
    top.legend(fontsize=8)
    daily = g["path_delta"] * cfg["contracts"]    # short the option: long delta shares
    weekly = daily[(np.arange(n_steps) // 5) * 5]
    bottom.step(day, np.append(daily, daily[-1]), where="post", color="tab:blue",
                label="delta daily")
    bottom.step(day, np.append(weekly, weekly[-1]), where="post", color="tab:orange",
                label="delta every 5 days")
    if ko > 0:
        bottom.axvline(ko, color="tab:red", linestyle=":", linewidth=1, label="knock-out")
    bottom.set_xlabel("trading day")
    bottom.set_ylabel("hedge position (shares)")
    bottom.set_title(f"hedge of {plural(cfg['contracts'], 'short down-and-out call')} "
                     "(closed-form delta along the path)", fontsize=10)
    bottom.legend(fontsize=8)
    return fig


def _asian_figure(cfg, g):
    fig, ax = figure(size=(7.5, 4.4))
    a = ax[0, 0]
    day = np.arange(g["n_steps"])
    a.fill_between(day, g["asian_p10"], g["asian_p90"], color="tab:green", alpha=0.2,
                   label="Asian: 10th-90th percentile")
    a.plot(day, g["mean_abs_asian"], color="tab:green",
           label=f"Asian call ({cfg['asian_fixings']} fixings): mean |delta|")
    a.plot(day, g["mean_abs_call"], color="tab:blue", linestyle="--",
           label="vanilla call: mean |delta|")
    a.set_xlabel("trading day")
    a.set_ylabel("|delta| (shares per option)")
    a.set_title(f"delta as the average accrues ({g['plot_paths']:,} simulated paths)",
                fontsize=10)
    a.legend(fontsize=8)
    return fig


def _varswap_figure(vs_results, strip_strikes, kinds, quantities, s_star):
    fig, ax = figure(ncols=3, size=(16.5, 4.4))
    strip = vs_results["var swap + strip"]
    histograms(ax[0, 0], {"delta daily (delta = 0)": vs_results["variance swap"].pnl,
                          "with strip, delta daily": strip.pnl},
               xlabel="P&L at expiry, after costs ($)")
    ax[0, 0].set_title("short variance swap, Heston world", fontsize=10)
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ax[0, 1].set_prop_cycle(color=colors[1:])   # the strip's colour of the left panel
    histograms(ax[0, 1], {"with strip, delta daily: after costs": strip.pnl,
                          "before costs": strip.hedge_error}, xlabel="P&L at expiry ($)")
    ax[0, 1].set_title("with the strip, on its own range", fontsize=10)
    a = ax[0, 2]
    strikes = np.asarray(strip_strikes)
    kinds = np.asarray(kinds)
    quantities = np.asarray(quantities)
    width = 0.8 * (np.min(np.diff(np.unique(strikes))) if np.unique(strikes).size > 1 else 1.0)
    puts = kinds == "put"
    a.bar(strikes[puts], quantities[puts], width=width, color="tab:red", label="puts")
    # at S* half a put and half a call: the call's bar stacked on the put's
    bottom = np.array([quantities[puts & (strikes == k)].sum() for k in strikes[~puts]])
    a.bar(strikes[~puts], quantities[~puts], width=width, bottom=bottom, color="tab:blue",
          label="calls")
    a.axvline(s_star, color="k", linestyle=":", linewidth=1, label=f"S* = {s_star:g}")
    a.set_xlabel("strike ($)")
    a.set_ylabel("options held (notional x 2 dK / (T K^2))")
    a.set_title("the replicating strip (long)", fontsize=10)
    a.legend(fontsize=8)
    return fig
