"""jump-risk: why delta hedging fails in a crash, and what an out-of-the-money put does for the
tail.

Setup. A desk has SOLD `contracts` out-of-the-money puts (strike `strike`, maturity
`maturity`) and delta-hedges them daily (252 days a year) with shares, frictionless unless
`cost_rate` > 0. Two worlds, both risk-neutral (so every mean P&L is ~0 and only the shape
of the P&L differs):

- jump world: Merton (1976) jump-diffusion, diffusion vol `vol`, Poisson jumps at
  `jump_rate` a year with log jump size N(`jump_mean`, `jump_std`^2);
- diffusion world: Black-Scholes with the SAME total variance of log returns per year,
  vol_bs^2 = vol^2 + jump_rate (jump_mean^2 + jump_std^2) (`Merton.total_vol`).

Each world is hedged with its own model (the Merton series price and its autodiff delta in
the jump world, Black-Scholes at vol_bs in the diffusion world), and the puts are sold at that
model's price: the hedger knows the world exactly, so what remains is what shares cannot
hedge. A jump moves the spot by a finite amount between two rebalances; the short put loses
its convexity on the whole move at once, and no rebalancing frequency catches it.

Tail hedge (the choice made here, and why). The desk also BUYS `tail_ratio` puts per put sold
at the lower strike `tail_strike`, same maturity, at the Merton price, holds them to maturity
(a static position in the book), and delta-hedges the whole book daily (the shares hedge the
delta of both puts). Static, because the protection must already be in place when the gap
happens: a gamma-neutral hedge with the same put (`DeltaGammaHedge`) re-sizes it every day
from local gamma, which says little about a 15% gap and, with a same-maturity put whose gamma
vanishes away from its strike, needs ever larger positions (we measured it: far worse tails
and 4x the run time). With `tail_ratio` = 1 the book becomes a put spread, whose loss at
maturity is bounded by (strike - tail_strike) x contracts.

Reference: the gap loss of one instantaneous jump at t0 of the typical size e^{jump_mean} (and
of a 2-std jump, e^{jump_mean - 2 jump_std}), priced with the world's model: minus (book value
after the jump - before, plus the delta hedge's gain, -delta x the spot move). It is the loss
a delta hedge cannot avoid, whatever its frequency.

Conventions (docs/architecture.md, "Conventions"): the user holds the book (short puts:
quantity -contracts, tail puts +tail_ratio x contracts); hedge in shares; P&L in time-T
money ($ in the default config), > 0 a gain. Every loss column is a positive loss, as VaR
and ES at `alpha` are (ES 0.99 = mean loss in the worst 1%): the worst path's loss (-min
P&L) and the gap losses; a negative value there is a gain. Hedge effectiveness = 1 -
Var(P&L) / Var(unhedged P&L).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import daily_grid, figure, stats_row
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "jump-risk"
QUESTION = ("A desk short out-of-the-money puts delta-hedges daily: how much fatter is the loss "
            "tail in a jump world than in a diffusion world of the same variance, and how "
            "much does a long further-out put take off it?")
# paths >= 100: hedge effectiveness divides by the unhedged P&L's variance, which is 0 when
# every path ends out of the money (likely with a handful of paths)
BOUNDS = {"paths": AtLeast(100), "contracts": Positive(), "spot": Positive(),
          "strike": Positive(), "maturity": Positive(), "vol": Positive(),
          "jump_rate": NonNegative(),
          "jump_mean": Between(-2.0, 2.0), "jump_std": NonNegative(),
          "rate": Between(-0.5, 0.5), "cost_rate": Between(0.0, 0.1, closed=True),
          "tail_strike": Positive(), "tail_ratio": NonNegative(),
          "alpha": Between(0.5, 1.0)}



# Paths simulated together when the hedge model is Merton: its 64-term series price and
# autodiff delta at every step make large blocks spill out of cache. Measured on the 2-core
# CPU, 100,000 paths x 63 steps: 27 s in one block (the default 2^18), 5.4 s in blocks of
# 4,096. A performance knob only: results do not depend on it.
MERTON_BLOCK = 4096
SERIES_TERMS = 60


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(x, dtype=float) / math.sqrt(2.0)))


def merton_put(spot: float, strike: float, tau: float, vol: float, rate: float,
               jump_rate: float, jump_mean: float, jump_std: float) -> float:
    """Merton (1976) eq. 19 in NumPy float64, independent of hedgejax's pricer: a Poisson
    mixture of Black-Scholes puts, sum_n e^{-l' tau} (l' tau)^n / n! BS(vol_n, r_n), with
    l' = jump_rate (1 + kbar), vol_n^2 = vol^2 + n jump_std^2 / tau,
    r_n = rate - jump_rate kbar + n (jump_mean + jump_std^2 / 2) / tau. jump_rate = 0 is
    Black-Scholes."""
    kbar = math.expm1(jump_mean + 0.5 * jump_std ** 2)
    lam = jump_rate * (1.0 + kbar) * tau
    n = np.arange(SERIES_TERMS, dtype=float)
    if lam > 0:
        log_w = n * math.log(lam) - lam - np.array([math.lgamma(k + 1.0) for k in n])
    else:
        log_w = np.where(n == 0, 0.0, -np.inf)
    sd = np.sqrt(vol ** 2 * tau + n * jump_std ** 2)
    r_n = rate - jump_rate * kbar + n * (jump_mean + 0.5 * jump_std ** 2) / tau
    d1 = (math.log(spot / strike) + r_n * tau) / sd + 0.5 * sd
    put = strike * np.exp(-r_n * tau) * _norm_cdf(sd - d1) - spot * _norm_cdf(-d1)
    return float(np.sum(np.exp(log_w) * put))


def book_delta(price, spot: float) -> float:
    """d price / d spot by a central difference (price: a float64 function of spot)."""
    h = 1e-4 * spot
    return (price(spot + h) - price(spot - h)) / (2 * h)


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax.numpy as jnp

    import hedgejax as hj

    if cfg["hedge_model"] not in ("merton", "black-scholes"):
        raise ValueError(f"config key 'hedge_model' must be merton or black-scholes, got "
                         f"{cfg['hedge_model']!r}")
    if cfg["tail_strike"] >= cfg["strike"]:
        raise ValueError(f"config key 'tail_strike' must be below strike ({cfg['strike']:g}) "
                         f"for a tail hedge, got {cfg['tail_strike']:g}")
    grid = daily_grid(cfg["maturity"])
    n_steps = grid.n_steps
    T, spot, rate, alpha = grid.maturity, cfg["spot"], cfg["rate"], cfg["alpha"]
    contracts = cfg["contracts"]
    jumpy = hj.Merton(spot, cfg["vol"], cfg["jump_rate"], cfg["jump_mean"], cfg["jump_std"],
                      rate)
    vol_bs = float(jumpy.total_vol)
    diffusion = hj.BlackScholes(spot, vol_bs, rate)
    puts = [hj.EuropeanPut(cfg["strike"], T), hj.EuropeanPut(cfg["tail_strike"], T)]
    tail_qty = cfg["tail_ratio"] * contracts
    # one book structure for every row (the tail quantity 0 where there is no tail hedge),
    # so each world compiles once
    naked = hj.Book(puts, quantities=[-contracts, 0.0])
    protected = hj.Book(puts, quantities=[-contracts, tail_qty])
    costs = hj.Proportional(cfg["cost_rate"])
    key, n = ctx.key, cfg["paths"]
    es_key = f"es_{alpha:g}"

    believed = jumpy if cfg["hedge_model"] == "merton" else diffusion
    runs = [("diffusion, delta hedged", diffusion, diffusion, naked),
            ("jumps, delta hedged", jumpy, believed, naked),
            ("jumps, delta hedged + tail puts", jumpy, believed, protected)]
    results = {}
    for label, world, hedge_model, book in ctx.track(runs, "hedging"):
        extra = {"block_size": MERTON_BLOCK} if isinstance(hedge_model, hj.Merton) else {}
        results[label] = hj.hedge(world, book, hj.DeltaHedge(), costs, grid, n, key,
                                  hedge_model=hedge_model, **extra)
    base = results["jumps, delta hedged"]
    zero = jnp.zeros_like(base.pnl)
    results["jumps, unhedged"] = hj.HedgeResult(
        pnl=base.unhedged_pnl, hedge_error=base.unhedged_pnl, cost=zero,
        n_trades=jnp.zeros_like(base.n_trades), unhedged_pnl=base.unhedged_pnl,
        final_position=zero, terminal_spot=base.terminal_spot,
        initial_price=base.initial_price)

    # Gap references (NumPy, float64): the world's value of the book after and before an
    # instantaneous jump at t0, plus the hedge's gain at the hedger's delta.
    no_jumps = (0.0, 0.0, 0.0)
    merton_params = (cfg["vol"], cfg["jump_rate"], cfg["jump_mean"], cfg["jump_std"])
    bs_params = (vol_bs, *no_jumps)
    believed_params = merton_params if cfg["hedge_model"] == "merton" else bs_params

    def value(params: tuple[float, ...], tail: float):
        def book_value(s: float) -> float:
            v = -contracts * merton_put(s, cfg["strike"], T, params[0], rate, *params[1:])
            if tail:
                v += tail * merton_put(s, cfg["tail_strike"], T, params[0], rate, *params[1:])
            return v
        return book_value

    def gap(jump: float, world: tuple, believed: tuple | None, tail: float) -> float:
        true_value = value(world, tail)
        change = true_value(spot * jump) - true_value(spot)
        if believed is not None:
            change -= book_delta(value(believed, tail), spot) * spot * (jump - 1.0)
        return change

    setup = {"diffusion, delta hedged": (bs_params, bs_params, 0.0),
             "jumps, unhedged": (merton_params, None, 0.0),
             "jumps, delta hedged": (merton_params, believed_params, 0.0),
             "jumps, delta hedged + tail puts": (merton_params, believed_params, tail_qty)}
    order = list(setup)
    typical = math.exp(cfg["jump_mean"])
    severe = math.exp(cfg["jump_mean"] - 2 * cfg["jump_std"])

    table = []
    for label in order:
        res = results[label]
        s = hj.summary(res, alpha=alpha)
        table.append(stats_row(
            label, res, alpha=alpha, hedge_effectiveness=s["hedge_effectiveness"],
            premium_received=-float(res.initial_price), worst_loss=-float(np.min(res.pnl)),
            gap_loss_typical_jump=-gap(typical, *setup[label]),
            gap_loss_2std_jump=-gap(severe, *setup[label])))
    rows = {r["strategy"]: r for r in table}
    diff, jump = rows["diffusion, delta hedged"], rows["jumps, delta hedged"]
    tail, bare = rows["jumps, delta hedged + tail puts"], rows["jumps, unhedged"]
    for r in table:
        # a ratio to itself, or a variance removed from itself, is no result: left empty
        r["es_vs_diffusion"] = (r[es_key] / diff[es_key] if diff[es_key] > 0
                                and r is not diff else None)
    bare["hedge_effectiveness"] = None

    p_jump = 1.0 - math.exp(-cfg["jump_rate"] * T)
    merton_price = merton_put(spot, cfg["strike"], T, cfg["vol"], rate, *merton_params[1:])
    bs_price = merton_put(spot, cfg["strike"], T, vol_bs, rate, *no_jumps)
    tail_put = merton_put(spot, cfg["tail_strike"], T, cfg["vol"], rate, *merton_params[1:])
    findings = [
        f"Same variance, different worlds: Merton with diffusion vol {cfg['vol']:.1%} and "
        f"{cfg['jump_rate']:g} jumps a year of log size N({cfg['jump_mean']:g}, "
        f"{cfg['jump_std']:g}^2) has total vol {vol_bs:.2%}, the Black-Scholes vol of the "
        f"diffusion world. P(at least one jump before maturity) = {p_jump:.1%}. The "
        f"{cfg['strike']:g} put costs {merton_price:.3f} with jumps and {bs_price:.3f} without.",
        f"Delta-hedged daily, the short puts' {alpha:.0%} ES is {jump[es_key]:,.1f} in the "
        f"jump world against {diff[es_key]:,.1f} in the diffusion world "
        f"({jump['es_vs_diffusion']:.1f}x), std {jump['std_pnl']:,.1f} against "
        f"{diff['std_pnl']:,.1f}, worst path's loss {jump['worst_loss']:,.1f} against "
        f"{diff['worst_loss']:,.1f}. Unhedged in the jump world the ES is {bare[es_key]:,.1f}: "
        f"delta hedging removes only {1 - jump[es_key] / bare[es_key]:.0%} of the tail "
        f"(hedge effectiveness {jump['hedge_effectiveness']:.0%} in variance, against "
        f"{diff['hedge_effectiveness']:.1%} without jumps).",
        f"The gap is the unhedgeable part: one typical jump (x{typical:.3f}) at t0 costs the "
        f"delta-hedged book {jump['gap_loss_typical_jump']:,.1f}, a 2-std jump "
        f"(x{severe:.3f}) {jump['gap_loss_2std_jump']:,.1f}, whatever the hedging frequency "
        f"(the same gap would cost the diffusion world's hedge "
        f"{diff['gap_loss_typical_jump']:,.1f}: that world just never gaps).",
    ]
    spread_note = ""
    if cfg["tail_ratio"] == 1.0:
        spread_note = (f" (the put spread itself loses at most ({cfg['strike']:g} - "
                       f"{cfg['tail_strike']:g}) x {contracts:g} = "
                       f"{(cfg['strike'] - cfg['tail_strike']) * contracts:,.0f} at maturity)")
    if tail_qty > 0:
        findings.append(
            f"Buying {tail_qty:g} puts at {cfg['tail_strike']:g} ({cfg['tail_ratio']:g} per "
            f"put sold, {tail_put:.3f} each: {tail_qty * tail_put:,.1f} of the "
            f"{jump['premium_received']:,.1f} premium "
            f"received) and delta-hedging the whole book cuts the ES from "
            f"{jump[es_key]:,.1f} to {tail[es_key]:,.1f} ({tail['es_vs_diffusion']:.1f}x "
            f"the diffusion world), the std from {jump['std_pnl']:,.1f} to "
            f"{tail['std_pnl']:,.1f}, the worst path's loss from {jump['worst_loss']:,.1f} to "
            f"{tail['worst_loss']:,.1f}{spread_note}, and the typical-jump gap loss from "
            f"{jump['gap_loss_typical_jump']:,.1f} to {tail['gap_loss_typical_jump']:,.1f}; "
            f"the mean P&L stays {tail['mean_pnl']:+.2f} +/- {tail['stderr']:.2f} (the puts "
            "are bought at the model's fair price; a market's skew premium would be the real "
            "cost).")

    fig, ax = figure(ncols=2, size=(12.0, 4.6))
    fig.suptitle(f"Short {contracts:,g} puts at {cfg['strike']:g} (spot {spot:g}, "
                 f"{n_steps} trading days), delta-hedged daily: {n:,} paths per world",
                 fontsize=11)
    shown = ["diffusion, delta hedged", "jumps, delta hedged",
             "jumps, delta hedged + tail puts"]
    samples = {k: np.asarray(results[k].pnl, dtype=float) for k in shown}
    lo = min(a.min() for a in samples.values())
    hi = max(a.max() for a in samples.values())
    edges = np.linspace(lo, hi, 121)
    for label, a in samples.items():
        ax[0, 0].hist(a, bins=edges, histtype="step", log=True, linewidth=1.3, label=label)
    ax[0, 0].set_xlabel("P&L at T ($; < 0 is a loss)")
    ax[0, 0].set_ylabel(f"paths per bin (of {n:,}, log scale)")
    ax[0, 0].set_title("P&L distribution", fontsize=10)
    ax[0, 0].legend(fontsize=7)
    for label, a in samples.items():
        losses = np.sort(-a)[::-1]
        prob = np.arange(1, len(losses) + 1) / len(losses)
        ax[0, 1].step(losses, prob, where="post", label=label)
    ax[0, 1].set_yscale("log")
    ax[0, 1].set_xlabel("loss x ($, = -P&L)")
    ax[0, 1].set_ylabel("P(loss > x), log scale")
    ax[0, 1].set_xlim(left=0.0)
    ax[0, 1].axhline(1 - alpha, color="k", linewidth=0.5, linestyle=":",
                     label=f"{1 - alpha:.0%} (the VaR level)")
    ax[0, 1].set_title("loss exceedance: how often the loss is above x", fontsize=10)
    ax[0, 1].legend(fontsize=7)

    tail_note = (f", plus {tail_qty:,g} puts bought at {cfg['tail_strike']:g} in the "
                 "tail-puts row" if tail_qty > 0 else "")
    return Outcome(
        table=table, findings=findings, title="delta hedging short puts with and without jumps",
        caption=(f"The book: {contracts:,g} puts sold at strike {cfg['strike']:g} (spot "
                 f"{spot:g}, {n_steps} trading days){tail_note}, delta-hedged daily with "
                 f"shares; {n:,} paths per world. Money in $ at T; P&L > 0 is a gain; VaR, "
                 f"ES, the worst loss (-min P&L) and the gap losses (of the book, hedged, "
                 f"when spot jumps at t0) are positive losses (VaR and ES at {alpha:.0%}); "
                 f"ES / no-jump ES compares with the diffusion row; hedge effectiveness = "
                 f"1 - Var(P&L) / Var(unhedged P&L)."),
        headers={
            "mean_pnl": "mean P&L ($)",
            f"var_{alpha:g}": f"{alpha:.0%} VaR ($ loss)",
            es_key: f"{alpha:.0%} ES ($ loss)",
            "worst_loss": "worst loss ($)",
            "es_vs_diffusion": "ES / no-jump ES",
            "hedge_effectiveness": "hedge effectiveness",
            "premium_received": "net premium received ($)",
            "gap_loss_typical_jump": f"gap loss, x{typical:.3f} jump ($)",
            "gap_loss_2std_jump": f"gap loss, x{severe:.3f} jump ($)",
        },
        # the terminal keeps the tail columns (80 columns); the files keep all
        display=["strategy", "mean_pnl", "std_pnl", es_key, "worst_loss", "es_vs_diffusion",
                 "hedge_effectiveness", "gap_loss_typical_jump"],
        results={"total_vol": vol_bs, "p_jump_before_maturity": p_jump,
                 "put_price_merton": merton_price, "put_price_bs": bs_price,
                 "tail_put_price": tail_put, "jump_factor_typical": typical,
                 "jump_factor_2std": severe, "n_steps": n_steps,
                 "quantiles": {k: np.percentile(a, [0.1, 1, 5, 50, 95]) for k, a in
                               samples.items()}},
        figures={"pnl_tails": fig})
