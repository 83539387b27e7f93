"""dynamic-vs-static: no hedge, a static hedge and dynamic delta hedges of a short call book,
compared on the numbers practitioners quote.

Setup. A desk has SOLD `contracts` at-the-money European calls (strike `strike`, maturity
`maturity`) at the Black-Scholes price, in a Black-Scholes world at `vol` (risk-neutral
drift, so every strategy's mean P&L before costs is ~0), and pays proportional costs
`cost_rate` x the value of each share trade. The hedging grid is daily (252 days a year) up
to the calls' maturity. Strategies:

- no hedge: hold the short calls naked (`HedgeResult.unhedged_pnl` of the daily run, which is
  by definition the P&L of holding the book unhedged on the same paths: what `hj.NoHedge()`
  gives, without simulating it again);
- static: `hj.StaticHedge()`, buy the t0 delta in shares once and hold it to maturity;
- dynamic: `hj.DeltaHedge(every=k)`, rebalance to delta-neutral every k trading days (k = 1
  daily, 5 weekly);
- band: `hj.BandHedge(w)` with w = `band_delta` x `contracts` shares, trading only when the
  position leaves +/- w of delta-neutral (a dynamic hedge that trades less).

Conventions (docs/architecture.md, "Conventions"): the user holds the book (here quantity
-contracts), the hedge is in shares (delta-neutral = -book delta, i.e. long shares against
short calls), P&L is in time-T money; VaR and ES at `alpha` are positive losses; upside is the
95th percentile of P&L; hedge effectiveness = 1 - Var(P&L) / Var(unhedged P&L) on the same paths.

References next to the measurements, for the frictionless P&L (hedge error, before costs):
- no hedge and static hedge: exact closed-form std. With F = S0 e^{rT}, the moments of the
  call payoff C and of S_T under the log-normal law (E[S_T^2] = F^2 e^{vol^2 T},
  E[S_T 1{S_T > K}] = F N(d1), E[S_T^2 1{S_T > K}] = F^2 e^{vol^2 T} N(d1 + vol sqrt T)) give
  Var(q C + h S_T) for q = -contracts calls and h = contracts N(d1) shares (h = 0 unhedged).
- delta hedging every k days, N = maturity x 252 / k rebalances over the option's life:
  Derman & Kamal (1999), std ~ sqrt(pi/4) x vol x |book vega| / sqrt(N), vega per 1.00 of
  vol. We checked it: summing the per-step variance (1/2)(Gamma S^2 vol^2 dt)^2 of the
  discrete-hedging error, with E[(Gamma S^2)^2] at time t = S0^2 / (2 pi vol^2
  sqrt(T^2 - t^2)) for the at-the-money option (r = 0), gives Var = vol^2 S0^2 dt / 8, which
  is the formula because the at-the-money vega is S0 sqrt(T / 2 pi). (A variant with
  sqrt(2N) in the denominator is off by sqrt 2.) It is a leading-order result in 1/N for an
  at-the-money option; expect it to be several percent high for weekly hedging (N ~ 13).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import cost_phrase, daily_grid, figure, histograms, plural, stats_row, unhedged_result
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "dynamic-vs-static"
QUESTION = ("For a desk short at-the-money calls, what do no hedge, a static hedge and dynamic "
            "delta hedges (daily, weekly, a band) buy in risk, cost and upside?")
# paths >= 100: hedge effectiveness divides by the unhedged P&L's variance, which is 0 when
# every path ends out of the money (likely with a handful of paths: all would be computed in
# vain, then refused as NaN)
BOUNDS = {"paths": AtLeast(100), "contracts": Positive(), "spot": Positive(),
          "strike": Positive(), "maturity": Positive(), "vol": Positive(),
          "rate": Between(-0.5, 0.5),
          "cost_rate": Between(0.0, 0.1, closed=True), "every": AtLeast(1),
          "band_delta": NonNegative(), "alpha": Between(0.5, 1.0)}



def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def closed_form_std(spot: float, strike: float, maturity: float, vol: float, rate: float,
                    calls: float, shares: float) -> float:
    """Exact std of calls x (S_T - K)^+ + shares x S_T under Black-Scholes (no dividends):
    the frictionless P&L std of `calls` calls held with a static `shares` hedge."""
    fwd = spot * math.exp(rate * maturity)
    sd = vol * math.sqrt(maturity)
    d1 = (math.log(fwd / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    growth = math.exp(sd * sd)
    e_c = fwd * _norm_cdf(d1) - strike * _norm_cdf(d2)
    e_s, e_s2 = fwd, fwd * fwd * growth
    e_cs = fwd * fwd * growth * _norm_cdf(d1 + sd) - strike * fwd * _norm_cdf(d1)
    e_c2 = (fwd * fwd * growth * _norm_cdf(d1 + sd) - 2 * strike * fwd * _norm_cdf(d1)
            + strike * strike * _norm_cdf(d2))
    var = (calls ** 2 * (e_c2 - e_c ** 2) + 2 * calls * shares * (e_cs - e_c * e_s)
           + shares ** 2 * (e_s2 - e_s ** 2))
    return math.sqrt(max(var, 0.0))


def derman_kamal_std(vega: float, vol: float, rebalances: float) -> float:
    """Derman & Kamal (1999): std of the P&L of an at-the-money option delta-hedged
    `rebalances` times over its life, sqrt(pi/4) vol |vega| / sqrt(N) (vega per 1.00)."""
    return math.sqrt(math.pi / 4) * vol * abs(vega) / math.sqrt(rebalances)


def std_stderr(x: np.ndarray) -> float:
    """Standard error of the sample std (delta method: sqrt(m4 - s^4) / (2 s sqrt(n)))."""
    x = np.asarray(x, dtype=float)
    c = x - x.mean()
    s2 = np.mean(c * c)
    if s2 <= 0:
        return 0.0
    return float(math.sqrt(max(np.mean(c ** 4) - s2 * s2, 0.0)) / (2 * math.sqrt(s2 * len(x))))


def _label(every: int) -> str:
    return {1: "delta daily", 5: "delta weekly"}.get(every, f"delta every {every} days")


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import hedgejax as hj

    grid = daily_grid(cfg["maturity"])
    n_steps = grid.n_steps
    every = sorted(set(cfg["every"]))
    if every[-1] > n_steps:
        raise ValueError(f"config key 'every' must be at most the {n_steps} trading days to "
                         f"maturity, got {every[-1]}")
    contracts, vol, rate = cfg["contracts"], cfg["vol"], cfg["rate"]
    model = hj.BlackScholes(cfg["spot"], vol, rate)
    call = hj.EuropeanCall(cfg["strike"], grid.maturity)
    book = hj.Book([call], quantities=[-contracts])
    costs = hj.Proportional(cfg["cost_rate"])
    alpha = cfg["alpha"]
    key, n = ctx.key, cfg["paths"]
    g = hj.greeks(model, call)
    call_delta, book_vega = float(g.delta), -contracts * float(g.vega)
    es_key = f"es_{alpha:g}"

    strategies: list[tuple[str, Any, int | None]] = [("static", hj.StaticHedge(), None)]
    strategies += [(_label(k), hj.DeltaHedge(every=k), k) for k in every]
    width = cfg["band_delta"] * contracts
    if width > 0:
        strategies.append((f"band +/-{width:g} sh", hj.BandHedge(width), None))

    results: dict[str, Any] = {}
    refs: dict[str, tuple[float | None, str]] = {}
    for label, strategy, k in ctx.track(strategies, "hedging"):
        results[label] = hj.hedge(model, book, strategy, costs, grid, n, key)
        if k is not None:
            refs[label] = (derman_kamal_std(book_vega, vol, n_steps / k), "Derman-Kamal")
    # The unhedged P&L is the same on every run's paths (same key): take the first's.
    results = {"no hedge": unhedged_result(results["static"]), **results}
    refs["no hedge"] = (closed_form_std(cfg["spot"], cfg["strike"], grid.maturity, vol, rate,
                                        -contracts, 0.0), "closed form")
    refs["static"] = (closed_form_std(cfg["spot"], cfg["strike"], grid.maturity, vol, rate,
                                      -contracts, contracts * call_delta), "closed form")

    table = []
    for label, res in results.items():
        s = hj.summary(res, alpha=alpha)
        ref, ref_name = refs.get(label, (None, "none"))
        frictionless = np.asarray(res.hedge_error)
        table.append(stats_row(
            label, res, alpha=alpha, hedge_effectiveness=s["hedge_effectiveness"],
            std_frictionless=float(np.std(frictionless, ddof=1)),
            std_frictionless_se=std_stderr(frictionless), reference_std=ref,
            reference=ref_name))

    rows = {r["strategy"]: r for r in table}
    premium = contracts * float(hj.price(model, call))
    naked, static = rows["no hedge"], rows["static"]
    p_keep = float(np.mean(np.asarray(results["no hedge"].terminal_spot) <= cfg["strike"]))
    findings = [
        f"Selling {contracts:g} calls brings in {premium:,.2f}. Unhedged, the P&L std is "
        f"{naked['std_pnl']:,.1f} (closed form {naked['reference_std']:,.1f}) and the "
        f"{alpha:.0%} ES is {naked[es_key]:,.1f}; the upside (95th percentile) is "
        f"{naked['p95_pnl']:,.1f}, and the calls expire worthless (the premium is kept "
        f"whole) on {p_keep:.0%} of paths.",
        f"The static hedge (buy {contracts * call_delta:,.1f} shares once) costs "
        f"{static['mean_cost']:,.2f} and cuts the std to {static['std_pnl']:,.1f} (closed form "
        f"{static['reference_std']:,.1f}), the ES to {static[es_key]:,.1f}: hedge effectiveness "
        f"{static['hedge_effectiveness']:.0%}, upside {static['p95_pnl']:,.1f}.",
    ]
    for k in every:
        r = rows[_label(k)]
        findings.append(
            f"{_label(k).capitalize()}: std {r['std_pnl']:,.1f}, {alpha:.0%} ES "
            f"{r[es_key]:,.1f}, effectiveness {r['hedge_effectiveness']:.1%}, for "
            f"{r['mean_cost']:,.2f} of costs ({r['mean_cost'] / premium:.1%} of the premium) "
            f"in {r['mean_trades']:.1f} trades; upside {r['p95_pnl']:,.1f}. Frictionless std "
            f"{r['std_frictionless']:,.1f} +/- {r['std_frictionless_se']:.1f} against "
            f"Derman-Kamal's {r['reference_std']:,.1f} ({n_steps / k:.3g} rebalances).")
    if width > 0:
        band = rows[f"band +/-{width:g} sh"]
        closest = min((rows[_label(k)] for k in every),
                      key=lambda r: abs(r["mean_cost"] - band["mean_cost"]))
        findings.append(
            f"The band (+/-{width:g} shares, {cfg['band_delta']:g} of delta) costs "
            f"{band['mean_cost']:,.2f} for std {band['std_pnl']:,.1f} and ES "
            f"{band[es_key]:,.1f}; {closest['strategy']}, the nearest in cost "
            f"({closest['mean_cost']:,.2f}), has std {closest['std_pnl']:,.1f} and ES "
            f"{closest[es_key]:,.1f}.")

    fig_hist, axes = figure(ncols=2, size=(12.0, 4.2))
    xlabel = f"P&L at expiry, {grid.maturity:g} years ($)"
    histograms(axes[0, 0], {k: v.pnl for k, v in results.items()}, xlabel=xlabel)
    axes[0, 0].set_title(f"short {contracts:,.0f} ATM calls: every strategy", fontsize=10)
    dynamic = {k: v.pnl for k, v in results.items() if k not in ("no hedge", "static")}
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    axes[0, 1].set_prop_cycle(color=colors[2:])     # the colours of the left panel
    histograms(axes[0, 1], dynamic, xlabel=xlabel)
    axes[0, 1].set_title("the dynamic hedges alone, on their own P&L range", fontsize=10)
    fig_bar, bax = figure(ncols=2, size=(12.0, 4.2))
    labels = [r["strategy"] for r in table]
    x = np.arange(len(labels))
    bax[0, 0].bar(x - 0.2, [r["std_pnl"] for r in table], 0.4, label="P&L std")
    bax[0, 0].bar(x + 0.2, [r[es_key] for r in table], 0.4, label=f"{alpha:.0%} ES")
    bax[0, 0].set_yscale("log")
    bax[0, 0].set_ylabel("$ per book (log scale)")
    bax[0, 0].set_title(f"risk: P&L std and {alpha:.0%} ES (a positive loss)", fontsize=10)
    bax[0, 1].bar(x, [r["mean_cost"] for r in table], 0.6, color="tab:red")
    bax[0, 1].set_ylabel("$ per book")
    bax[0, 1].set_title(f"mean transaction cost ({cfg['cost_rate']:.2%} of traded value)",
                        fontsize=10)
    for ax in (bax[0, 0], bax[0, 1]):
        ax.set_xticks(x, labels, rotation=20, fontsize=8)
    bax[0, 0].legend(fontsize=8)

    caption = (f"Short {plural(contracts, 'at-the-money call')} (strike {cfg['strike']:g}, "
               f"{plural(grid.maturity, 'year')}, vol {vol:.0%}) sold at the Black-Scholes "
               f"price and hedged with shares on a daily grid ({n_steps} days), "
               f"{cost_phrase(cfg['cost_rate'])}; {n:,} paths. Money in $ per book "
               f"at expiry; P&L > 0 is a gain; VaR and ES at {alpha:.0%} are positive losses; "
               f"effectiveness = 1 - Var(P&L) / Var(unhedged P&L). Frictionless: before costs; "
               f"its reference std is closed form (no hedge, static) or Derman-Kamal (delta "
               f"hedges); — where there is none.")
    return Outcome(
        table=table, findings=findings, title="no hedge vs static vs dynamic, short ATM calls",
        caption=caption,
        headers={f"var_{alpha:g}": f"{alpha:.0%} VaR ($ loss)",
                 es_key: f"{alpha:.0%} ES ($ loss)", "mean_cost": "mean cost ($)",
                 "hedge_effectiveness": "hedge effectiveness",
                 "std_frictionless": "frictionless P&L std ($)",
                 "std_frictionless_se": "SE of frictionless std ($)",
                 "reference_std": "reference std ($)", "reference": "reference"},
        # the terminal shows risk, cost and effectiveness (80 columns); the files keep all
        display=["strategy", "mean_pnl", "std_pnl", f"var_{alpha:g}", es_key, "mean_cost",
                 "mean_trades", "hedge_effectiveness"],
        results={"premium": premium, "call_delta": call_delta, "book_vega": book_vega,
                 "n_steps": n_steps, "p_calls_expire_worthless": p_keep,
                 "reference_std": {k: v[0] for k, v in refs.items()},
                 "quantiles": {k: np.percentile(np.asarray(v.pnl), [1, 5, 25, 50, 75, 95, 99])
                               for k, v in results.items()}},
        figures={"pnl_hist": fig_hist, "risk_cost": fig_bar})
