"""merger-arbitrage: the P&L of a merger (risk) arbitrage position held to the deal's
resolution, its "picking up nickels in front of a steamroller" left tail, its dependence on
the real-world deal probability at a fixed market spread, and hedging the break with puts.

Setup. A world `hj.MergerTarget` (hedgejax/_models/merger.py): the acquirer's price A and the
target's stand-alone value V are correlated geometric Brownian motions drifting at `rate`;
the offer is O = cash + exchange_ratio x A per target share; the deal resolves at the known
date `close` (one resolution date, so the protective puts have a closed-form price) and
completes with probability p (the target becomes the offer) or breaks (the target falls to
V). The market prices the target at the deal probability q: S = q O + (1 - q) V (cash
discounted to the close), so the spread O - S = (1 - q)(O - V) is the implied probability
q = (S - V) / (O - V) (Brown and Raymond 1986).

The position (per path, money in $ at the close, > 0 a gain): long `shares` target shares
bought at S_0 and short exchange_ratio x shares acquirer shares sold at A_0, both financed
(or earning) `rate`:

    P&L = shares [S_T - S_0 e^{rT} - ratio (A_T - A_0 e^{rT})].

On completion S_T = cash + ratio A_T and the P&L is the locked spread, whatever A does; on a
break it is V_T - S_0 e^{rT} - ratio (A_T - A_0 e^{rT}), a large loss. The mean is exactly
shares (p - q) e^{rT} (O_0 - V_0) with O_0 = cash e^{-rT} + ratio A_0 (the
`theory_mean` column): the arbitrageur earns only if the deal is likelier than the market
says. The protected rows also buy `put_ratio` puts per share struck at `put_strike`,
expiring at the close, at the model (risk-neutral) price: q x put on O + (1 - q) x put on V.

Statistics: mean, std, skewness, P(loss), VaR and ES at `alpha` (positive losses), the
worst path; return on capital (capital = the long leg, shares x S_0) annualised by 1/close;
Sharpe = mean / std / sqrt(close) (the P&L is already net of financing). Rows with the same
key share their random numbers, so differences between rows are not Monte Carlo noise.
References: Mitchell and Pulvino (2001), J. Finance 56(6); Baker and Savasoglu (2002),
J. Financial Economics 64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import figure, log_ticks
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "merger-arbitrage"
QUESTION = ("A merger arbitrageur buys the target and shorts the acquirer's shares: how "
            "skewed is the P&L, how does it depend on the real-world deal probability at "
            "the market's spread, and what do puts on the target cost and take off the tail?")
BOUNDS = {"paths": AtLeast(100), "shares": Positive(), "acquirer_spot": Positive(),
          "acquirer_vol": Positive(), "standalone_spot": Positive(),
          "standalone_vol": Positive(), "correlation": Between(-1.0, 1.0, closed=True),
          "cash": NonNegative(), "exchange_ratio": NonNegative(),
          "q": Between(0.0, 1.0, closed=True), "p": Between(0.0, 1.0, closed=True),
          "p_grid": Between(0.0, 1.0, closed=True), "close": Positive(),
          "rate": Between(-0.5, 0.5), "steps": AtLeast(1), "put_strike": Positive(),
          "put_ratio": NonNegative(), "alpha": Between(0.5, 1.0)}


def _skewness(x: np.ndarray) -> float:
    centred = x - x.mean()
    sd = centred.std()
    return float(np.mean(centred ** 3) / sd ** 3) if sd > 0 else 0.0


def _row(label: str, p: float, pnl: np.ndarray, capital: float, close: float, alpha: float,
         theory: float) -> dict[str, Any]:
    import jax.numpy as jnp

    import hedgejax as hj

    mean, std = float(pnl.mean()), float(pnl.std(ddof=1))
    sample = jnp.asarray(pnl)
    return {"strategy": label, "p": p, "mean_pnl": mean,
            "stderr": std / math.sqrt(pnl.size), "theory_mean": theory, "std_pnl": std,
            "skewness": _skewness(pnl), "p_loss": float(np.mean(pnl < 0)),
            f"var_{alpha:g}": float(hj.risk.var(sample, alpha)),
            f"es_{alpha:g}": float(hj.risk.expected_shortfall(sample, alpha)),
            "worst_loss": -float(pnl.min()),
            "annual_return_pct": 100 * mean / capital / close,
            "sharpe": mean / std / math.sqrt(close) if std > 0 else None}


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax

    import hedgejax as hj

    if cfg["cash"] + cfg["exchange_ratio"] <= 0:
        raise ValueError("config keys 'cash' and 'exchange_ratio' cannot both be 0 (no offer)")
    alpha, T, rate, n = cfg["alpha"], cfg["close"], cfg["rate"], cfg["paths"]
    shares, ratio = cfg["shares"], cfg["exchange_ratio"]
    es_key = f"es_{alpha:g}"

    def world(p: float) -> hj.MergerTarget:
        return hj.MergerTarget(cfg["acquirer_spot"], cfg["standalone_spot"],
                               cfg["acquirer_vol"], cfg["standalone_vol"], cash=cfg["cash"],
                               exchange_ratio=ratio, q=cfg["q"], p=p, close=T,
                               correlation=cfg["correlation"], rate=rate)

    base = world(cfg["p"])
    s0, a0 = float(base.spot), cfg["acquirer_spot"]
    offer0 = float(base.offer_value())
    v0 = cfg["standalone_spot"]
    growth = math.exp(rate * T)
    put = hj.EuropeanPut(cfg["put_strike"], T)
    put_price = float(hj.price(base, put))
    # the put's legs: on the offer (deal completes) and on the stand-alone value (breaks)
    put_offer = float(hj.price(base.replace(q=1.0), put))
    put_standalone = float(hj.price(base.replace(q=0.0), put))
    capital = shares * s0
    grid = hj.TimeGrid(T, cfg["steps"])

    p_values = sorted(set([cfg["p"], *cfg["p_grid"]]))
    table, samples = [], {}
    for p in ctx.track(p_values, "deal probabilities"):
        end = hj.merger_paths(world(p), grid, n, ctx.key)
        s_T, a_T = (np.asarray(x, dtype=np.float64) for x in (end.target, end.acquirer))
        arb = shares * (s_T - s0 * growth - ratio * (a_T - a0 * growth))
        puts = shares * cfg["put_ratio"] * (np.maximum(cfg["put_strike"] - s_T, 0.0)
                                            - put_price * growth)
        edge = shares * (p - cfg["q"]) * growth * (offer0 - v0)
        # the puts' expected payoff under p, less what they cost (both at the close)
        put_edge = shares * cfg["put_ratio"] * growth * (
            p * put_offer + (1 - p) * put_standalone - put_price)
        table.append(_row(f"p={p:g}", p, arb, capital, T, alpha, edge))
        table.append(_row(f"p={p:g} + puts", p, arb + puts, capital, T, alpha,
                          edge + put_edge))
        if p == cfg["p"]:
            samples = {"arbitrage": arb, "arbitrage + puts": arb + puts}

    rows = {r["strategy"]: r for r in table}
    head = rows[f"p={cfg['p']:g}"]
    hedged = rows[f"p={cfg['p']:g} + puts"]
    spread = offer0 - s0
    locked = shares * (offer0 - s0) * growth
    break_loss = shares * (s0 * growth - v0 * growth)
    implied = float(base.implied_probability())
    deal = (f"{cfg['cash']:g} cash + " if cfg["cash"] else "") + f"{ratio:g} acquirer shares"
    findings = [
        f"The offer ({deal} per target share) is worth {offer0:.2f} against a target price "
        f"of {s0:.2f} and a stand-alone value of {v0:.2f}: the spread of {spread:.2f} "
        f"({spread / s0:.2%} of the price, {spread / s0 / T:.2%} a year) implies a deal "
        f"probability (S - V) / (O - V) = {implied:.1%}. Completion locks in about "
        f"{locked:,.0f} on {shares:,g} shares; a break costs about {break_loss:,.0f} before "
        "the hedge leg's noise.",
        f"At p = {cfg['p']:g} the P&L is the steamroller shape: P(loss) {head['p_loss']:.1%}, "
        f"skewness {head['skewness']:.2f}, mean {head['mean_pnl']:,.0f} +/- "
        f"{head['stderr']:,.0f} (theory (p - q) e^(rT) (O - V) x shares = "
        f"{head['theory_mean']:,.0f}), {alpha:.0%} ES {head[es_key]:,.0f}, worst path "
        f"{head['worst_loss']:,.0f}; {head['annual_return_pct']:.1f}% a year on the long leg's "
        f"capital of {capital:,.0f}, Sharpe {head['sharpe']:.2f}.",
    ]
    sweep = [rows[f"p={p:g}"] for p in sorted(set(cfg["p_grid"]))]
    findings.append(
        "At the same spread, the real-world deal probability decides everything: "
        + "; ".join(f"p = {r['p']:g}: mean {r['mean_pnl']:,.0f}, {r['annual_return_pct']:.1f}% a "
                    f"year, Sharpe {r['sharpe']:.2f}, P(loss) {r['p_loss']:.1%}"
                    for r in sweep)
        + f". The arbitrage breaks even at p = q = {cfg['q']:g}. The loss in a break does "
        f"not depend on p, only how often it strikes: the {alpha:.0%} ES goes from "
        f"{sweep[0][es_key]:,.0f} at p = {sweep[0]['p']:g} to {sweep[-1][es_key]:,.0f} at "
        f"p = {sweep[-1]['p']:g}.")
    if cfg["put_ratio"] > 0:
        findings.append(
            f"Buying {cfg['put_ratio']:g} put per share struck at {cfg['put_strike']:g} "
            f"(expiring at the close) costs {put_price:.3f} a share at the market's q "
            f"({shares * cfg['put_ratio'] * put_price:,.0f} in all; q x {put_offer:.3f} "
            f"on the offer + (1 - q) x {put_standalone:.3f} on the stand-alone value). At "
            f"p = {cfg['p']:g} it cuts the {alpha:.0%} ES from {head[es_key]:,.0f} to "
            f"{hedged[es_key]:,.0f} and the worst loss from {head['worst_loss']:,.0f} to "
            f"{hedged['worst_loss']:,.0f}, for a mean of {hedged['mean_pnl']:,.0f} instead "
            f"of {head['mean_pnl']:,.0f} (annual return {hedged['annual_return_pct']:.1f}% vs "
            f"{head['annual_return_pct']:.1f}%): the put is priced at the market's break "
            f"probability {1 - cfg['q']:.0%}, so a buyer who believes in "
            f"{1 - cfg['p']:.0%} overpays by the same edge the arbitrage earns.")

    fig, ax = figure(ncols=3, size=(16.0, 4.8))
    fig.suptitle(f"Merger arbitrage: long {shares:,g} target shares, short {ratio * shares:,g} "
                 f"acquirer shares, held {T:g} years to resolution ({n:,} paths, p = "
                 f"{cfg['p']:g}, market q = {cfg['q']:g})", fontsize=11)
    lo = min(a.min() for a in samples.values())
    hi = max(a.max() for a in samples.values())
    edges = np.linspace(lo, hi, 121)
    for label, a in samples.items():
        ax[0, 0].hist(a, bins=edges, histtype="step", log=True, linewidth=1.3, label=label)
    ax[0, 0].axvline(0.0, color="k", linewidth=0.6, linestyle=":")
    ax[0, 0].set_xlabel("P&L at the close ($; < 0 is a loss)")
    ax[0, 0].set_ylabel(f"paths per bin (of {n:,}, log scale)")
    ax[0, 0].set_title("P&L distribution: nickels and the steamroller", fontsize=10)
    ax[0, 0].legend(fontsize=8)

    ps = sorted(set(cfg["p_grid"]))
    for label, suffix, style in (("arbitrage", "", "o-"), ("arbitrage + puts", " + puts", "s--")):
        sel = [rows[f"p={p:g}{suffix}"] for p in ps]
        ax[0, 1].errorbar(ps, [r["annual_return_pct"] for r in sel],
                          yerr=[200 * r["stderr"] / capital / T for r in sel], fmt=style,
                          capsize=3, label=f"{label}: return (+/- 2 SE)")
    ax[0, 1].axhline(0.0, color="k", linewidth=0.6)
    ax[0, 1].axvline(cfg["q"], color="grey", linewidth=0.8, linestyle=":",
                     label=f"p = q = {cfg['q']:g} (market-implied)")
    ax[0, 1].set_xlabel("real-world deal probability p")
    ax[0, 1].set_ylabel("expected return on capital (% a year)")
    ax[0, 1].set_title("what the arbitrage earns at a fixed spread", fontsize=10)
    twin = ax[0, 1].twinx()
    for label, suffix, style in (("arbitrage", "", "o:"), ("arbitrage + puts", " + puts", "s:")):
        twin.plot(ps, [rows[f"p={p:g}{suffix}"][es_key] / 1e3 for p in ps], style,
                  color="tab:red", alpha=0.7 if label == "arbitrage" else 0.4,
                  label=f"{label}: {alpha:.0%} ES")
    twin.set_ylabel(f"{alpha:.0%} ES (thousand $ loss)", color="tab:red")
    handles = ax[0, 1].get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    ax[0, 1].legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=7,
                    loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)

    losses = {k: np.sort(-a)[::-1] for k, a in samples.items()}
    for label, x in losses.items():
        prob = np.arange(1, x.size + 1) / x.size
        keep = x > 0
        ax[0, 2].step(x[keep], prob[keep], where="post", label=label)
    ax[0, 2].set_yscale("log")
    ax[0, 2].axhline(1 - alpha, color="k", linewidth=0.5, linestyle=":",
                     label=f"{1 - alpha:.0%} (the VaR level)")
    ax[0, 2].set_xlabel("loss x ($, = -P&L)")
    ax[0, 2].set_ylabel("P(loss > x), log scale")
    ax[0, 2].set_title("loss exceedance: the left tail", fontsize=10)
    ax[0, 2].legend(fontsize=8)
    log_ticks(ax[0, 2].yaxis)

    # a few paths of the three prices, daily: two that complete and two that break
    days = max(1, round(T * 252))
    few = hj.merger_paths(base, hj.TimeGrid(T, days), 256, jax.random.fold_in(ctx.key, 1),
                          keep_path=True)
    final = np.asarray(few.status)[:, -1]
    chosen = [*np.flatnonzero(final == 1)[:2], *np.flatnonzero(final == 2)[:2]]
    times = np.linspace(0.0, T, days + 1)
    fig2, ax2 = figure(ncols=1, size=(8.0, 4.8))
    offer_paths = cfg["cash"] * np.exp(-rate * (T - times)) + ratio * np.asarray(few.acquirer)
    for k, i in enumerate(chosen):
        colour = f"C{k}"
        outcome = "completes" if final[i] == 1 else "breaks"
        ax2[0, 0].plot(times, np.asarray(few.target)[i], color=colour, linewidth=1.6,
                       label=f"target, path {k + 1} ({outcome})")
        ax2[0, 0].plot(times, offer_paths[i], color=colour, linewidth=0.7, linestyle="--")
        ax2[0, 0].plot(times, np.asarray(few.standalone)[i], color=colour, linewidth=0.7,
                       linestyle=":")
    ax2[0, 0].plot([], [], color="grey", linestyle="--", label="offer value (dashed)")
    ax2[0, 0].plot([], [], color="grey", linestyle=":", label="stand-alone value (dotted)")
    ax2[0, 0].set_xlabel("time (years)")
    ax2[0, 0].set_ylabel("price per target share ($)")
    ax2[0, 0].set_title(f"target = q x offer + (1 - q) x stand-alone until the close, then "
                        f"one of them (q = {cfg['q']:g})", fontsize=10)
    ax2[0, 0].legend(fontsize=7, ncol=2)

    return Outcome(
        table=table, findings=findings,
        title="merger arbitrage held to resolution: P&L by real-world deal probability",
        caption=(f"Long {shares:,g} target shares at {s0:.2f}, short {ratio * shares:,g} "
                 f"acquirer shares at {a0:g}, financed at {rate:.1%}, held {T:g} years to "
                 f"the resolution date; the market's deal probability q = {cfg['q']:g}, the "
                 f"real-world one p per row. '+ puts': also long {cfg['put_ratio']:g} put "
                 f"per share at {cfg['put_strike']:g} bought at {put_price:.3f}. Money in $ "
                 f"at the close; P&L > 0 a gain; VaR, ES ({alpha:.0%}) and the worst loss "
                 "are positive losses; return = mean P&L / long capital / years; Sharpe = "
                 "mean / std / sqrt(years)."),
        headers={"p": "real-world p", "mean_pnl": "mean P&L ($)",
                 "theory_mean": "theory mean ($)", "std_pnl": "P&L std ($)",
                 "skewness": "skew", "p_loss": "P(loss)",
                 f"var_{alpha:g}": f"{alpha:.0%} VaR ($ loss)",
                 es_key: f"{alpha:.0%} ES ($ loss)", "worst_loss": "worst loss ($)",
                 "strategy": "position (real-world p)",
                 "annual_return_pct": "return (% a year)", "sharpe": "Sharpe"},
        display=["strategy", "mean_pnl", "skewness", "p_loss", es_key, "annual_return_pct",
                 "sharpe"],
        results={"target_price": s0, "offer_value": offer0, "standalone_value": v0,
                 "spread": spread, "implied_probability": implied, "put_price": put_price,
                 "put_price_offer_leg": put_offer, "put_price_standalone_leg": put_standalone,
                 "capital": capital, "locked_gain": locked, "break_loss": break_loss,
                 "quantiles": {k: np.percentile(a, [0.1, 1, 5, 50, 95]).tolist()
                               for k, a in samples.items()}},
        figures={"merger_pnl": fig, "merger_paths": fig2})
