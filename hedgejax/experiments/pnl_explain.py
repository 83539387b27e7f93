"""pnl-explain: the market-maker book's P&L explained term by term, at the right and at the
wrong vol.

Setup. The book of the market-maker experiment: long `contracts` calls whose Black-Scholes
delta at `vol` is `delta`, maturing in `option_maturity` years, bought at the Black-Scholes
price at the implied `vol` and delta-hedged `per_day` times a day for `days` trading days
(252 a year) with Black-Scholes deltas at `vol`, paying `commission` a trade (`Fixed`). Rate
0, risk-neutral drift. First the world's vol is `vol` (the hedge is at the right vol), then
each of `realised_vols` (the book still priced and hedged at `vol`: the wrong vol).
`hedge(..., attribution=True)` splits every path's P&L into delta, gamma, theta, ...,
commission and a residual (`hedgejax._attribution`), reported with `explain_summary`.

Theory (the gamma-theta mismatch). With rate 0 the hedge model's Black-Scholes equation is
Theta = -1/2 implied^2 S^2 Gamma, and in a log-normal world of vol `realised` and drift 0,
E[dS^2 | S_i] = S_i^2 (e^{realised^2 dt} - 1). So the explain's gamma + theta, summed over the
steps t_i = i dt, has the expectation

    E[gamma + theta] = sum_i 1/2 E[Gamma_imp(t_i, S_i) S_i^2] ((e^{realised^2 dt} - 1)
                                                              - implied^2 dt)

exactly (no continuous-time limit), ~ 1/2 sum Gamma S^2 (realised^2 - implied^2) dt, with
E[Gamma_imp S^2] in closed form (`gamma_scalping.expected_dollar_gamma`: the product of two
normal densities). At the right vol it is O(dt) and gamma and theta cancel on average (the
gamma-scalping identity; Bergomi, "Stochastic Volatility Modeling", 2016, sec. 1.1; Taleb,
"Dynamic Hedging", 1997, ch. 8); at the wrong vol the mismatch is the P&L. The run checks the
measured mean against this number in standard errors, and solves it for the realised vol at
which the book breaks even after its commission.

Conventions (docs/architecture.md): the user holds the book; hedge in shares; money in time-T
currency ($) per book at day `days`; > 0 is a gain.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import figure, plural
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "pnl-explain"
QUESTION = ("A market maker's book of calls delta-hedged daily: what do delta, gamma, theta, "
            "commission and the residual each contribute to its P&L, and how does the explain "
            "show hedging at the wrong vol (gamma + theta against 1/2 Gamma S^2 (realised^2 - "
            "implied^2) dt)?")
BOUNDS = {"contracts": Positive(), "delta": Between(0.0, 1.0), "option_maturity": Positive(),
          "spot": Positive(), "vol": Between(0.0, 5.0), "realised_vols": Between(0.0, 5.0),
          "days": AtLeast(1), "per_day": AtLeast(1), "commission": NonNegative()}

GAMMA_THETA = "gamma + theta"
THEORY = "theory: gamma + theta"


def theory_gamma_theta(contracts: float, spot: float, strike: float, option_maturity: float,
                       implied: float, realised: float, n_steps: int, dt: float) -> float:
    """E[gamma + theta] of `contracts` long calls hedged at `implied` in a world of vol
    `realised` (rate 0, drift 0), summed over steps t_i = i dt, i < n_steps (module
    docstring; NumPy float64, independent of hedgejax's pricer)."""
    from .gamma_scalping import expected_dollar_gamma

    t = np.arange(n_steps) * dt
    dollar_gamma = expected_dollar_gamma(t, spot, strike, option_maturity, implied, realised,
                                         0.0, 0.0)
    spread = math.expm1(realised ** 2 * dt) - implied ** 2 * dt
    return float(contracts * np.sum(0.5 * dollar_gamma * spread))


def break_even_vol(target: float, theory) -> float | None:
    """The realised vol at which `theory(vol)` (increasing) reaches `target`, by bisection on
    [0.001, 5]; None when it is not reached there."""
    lo, hi = 1e-3, 5.0
    if theory(lo) > target or theory(hi) < target:
        return None
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if theory(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def _label(realised: float, implied: float) -> str:
    return (f"realised {realised:.0%} = implied" if realised == implied
            else f"realised {realised:.0%}")


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:

    import hedgejax as hj

    from .._explain import explain_summary, plot_explain
    from .market_maker import desk_book

    implied, spot, contracts = cfg["vol"], cfg["spot"], cfg["contracts"]
    hedge_model = hj.BlackScholes(spot, implied)
    strike, call, grid = desk_book(hedge_model, cfg)
    horizon, n_steps = grid.maturity, grid.n_steps
    dt = horizon / n_steps
    book = hj.Book([call], quantities=[contracts])
    costs = hj.Fixed(cfg["commission"])
    key, n = ctx.key, cfg["paths"]
    worlds = [implied] + sorted(v for v in set(cfg["realised_vols"]) if v != implied)

    def theory(realised: float) -> float:
        return theory_gamma_theta(contracts, spot, strike, cfg["option_maturity"], implied,
                                  realised, n_steps, dt)

    runs = {}
    for realised in ctx.track(worlds, "worlds"):
        res = hj.hedge(hj.BlackScholes(spot, realised), book, hj.DeltaHedge(), costs, grid, n,
                       key, hedge_model=hedge_model, attribution=True)
        terms = {k: np.asarray(v, dtype=float) for k, v in res.attribution.terms().items()}
        pnl = np.asarray(res.pnl, dtype=float)
        rows = explain_summary(res.attribution, pnl)
        gt = terms["gamma"] + terms["theta"]
        se = float(np.std(gt, ddof=1) / math.sqrt(n))
        runs[realised] = {"result": res, "terms": terms, "pnl": pnl, "summary": rows,
                          "gamma_theta": gt, "gamma_theta_mean": float(gt.mean()),
                          "gamma_theta_se": se, "theory": theory(realised)}
        r = runs[realised]
        r["z"] = (r["gamma_theta_mean"] - r["theory"]) / se if se > 0 else 0.0

    base = runs[implied]
    wrong = [v for v in worlds if v != implied]
    # the terms that are not 0 on every path of some world, in the explain's order
    shown = [row["term"] for i, row in enumerate(base["summary"][:-1])
             if not all(runs[v]["summary"][i]["zero"] for v in worlds)]

    def stats(realised: float, term: str) -> dict[str, Any]:
        r = runs[realised]
        if term == GAMMA_THETA:
            share = sum(row["var_share"] or 0.0 for row in r["summary"]
                        if row["term"] in ("gamma", "theta"))
            return {"mean": r["gamma_theta_mean"], "stderr": r["gamma_theta_se"],
                    "std": float(np.std(r["gamma_theta"], ddof=1)), "variance_share": share}
        if term == THEORY:
            return {"mean": r["theory"], "stderr": None, "std": None, "variance_share": None}
        row = next(row for row in r["summary"] if row["term"] == term)
        return {"mean": row["mean"], "stderr": row["stderr"], "std": row["std"],
                "variance_share": row["var_share"]}

    table = []
    for term in [*shown, GAMMA_THETA, THEORY, "pnl"]:
        s = stats(implied, term)
        row = {"term": "P&L" if term == "pnl" else term, **s}
        for v in wrong:
            w = stats(v, term)
            row[f"mean_at_{v:g}"] = w["mean"]
            row[f"stderr_at_{v:g}"] = w["stderr"]
        table.append(row)

    commission = max(0.0, -next(r["mean"] for r in base["summary"]
                                if r["term"] == "commission"))
    even = break_even_vol(commission, theory)
    median = int(np.argsort(base["pnl"], kind="stable")[(n - 1) // 2])
    findings = _findings(cfg, strike, n_steps, n, implied, base, runs, wrong, commission, even,
                         theory)

    figures = {
        "explain": plot_explain(base["result"].attribution, pnl=base["pnl"], unit="$",
                                title=f"{plural(contracts, 'long call')} hedged "
                                      f"{_per_day(cfg['per_day'])} at the right vol "
                                      f"({implied:.0%}): P&L explain"),
        "terms": _terms_figure(cfg, runs, worlds, implied, shown),
        "wrong_vol": _wrong_vol_figure(cfg, runs, worlds, implied, theory, commission, even),
    }
    caption = (f"Long {plural(contracts, 'call')} (strike {strike:,.2f}, delta "
               f"{cfg['delta']:g}, {plural(cfg['option_maturity'], 'year')}) bought at "
               f"{implied:.0%} implied vol and delta-hedged at it {_per_day(cfg['per_day'])} for "
               f"{cfg['days']} trading days ({n_steps} rebalances) at ${cfg['commission']:g} a "
               f"trade; {n:,} paths per world. Money in $ per book at day {cfg['days']}; > 0 "
               f"is a gain. Columns: the world at the implied vol (mean, SE, std, share of "
               f"the P&L variance: Cov(term, P&L) / Var(P&L)), then the mean in worlds of "
               f"other realised vols (hedged at {implied:.0%}). theory: E[sum 1/2 Gamma S^2 "
               f"((e^(realised^2 dt) - 1) - implied^2 dt)], closed form. Terms 0 on every "
               f"path are not listed.")
    headers = {"term": "P&L term", "mean": f"mean at {implied:.0%} ($)",
               "stderr": "SE of mean ($)", "std": "std ($)",
               "variance_share": "share of P&L variance"}
    for v in wrong:
        headers[f"mean_at_{v:g}"] = f"mean at {v:.0%} ($)"
        headers[f"stderr_at_{v:g}"] = f"SE at {v:.0%} ($)"
    display = ["term", "mean", "stderr", "std", "variance_share"]
    display += [f"mean_at_{v:g}" for v in (wrong if len(wrong) <= 2 else [wrong[0],
                                                                          wrong[-1]])]
    results = {
        "strike": strike, "horizon_years": horizon, "rebalances": n_steps,
        "break_even_vol": even, "mean_commission": commission, "median_path": median,
        "median_path_terms": {t: float(base["terms"][t][median]) for t in shown},
        "median_path_pnl": float(base["pnl"][median]),
        "worlds": [{"realised_vol": v, "label": _label(v, implied),
                    "gamma_theta_mean": runs[v]["gamma_theta_mean"],
                    "gamma_theta_stderr": runs[v]["gamma_theta_se"],
                    "gamma_theta_theory": runs[v]["theory"], "z_gamma_theta": runs[v]["z"],
                    "explain": runs[v]["summary"]} for v in worlds],
    }
    return Outcome(table=table, findings=findings, title="P&L explain of the market-maker book",
                   caption=caption, headers=headers, display=display, results=results,
                   figures=figures)


def _per_day(per_day: int) -> str:
    return "daily" if per_day == 1 else f"{per_day} times a day"


def _findings(cfg, strike, n_steps, n, implied, base, runs, wrong, commission, even,
              theory) -> list[str]:
    rows = {r["term"]: r for r in base["summary"]}
    g, th, res, pnl = rows["gamma"], rows["theta"], rows["residual"], rows["pnl"]
    zero = [r["term"] for r in base["summary"][:-1] if r["zero"]]
    out = [
        f"Long {cfg['contracts']:,.0f} calls at strike {strike:.2f} (delta {cfg['delta']:g}), "
        f"hedged {_per_day(cfg['per_day'])} at {implied:.0%} ({n_steps} rebalances, "
        f"{n:,} paths): P&L {pnl['mean']:,.0f} +/- {pnl['stderr']:,.0f} (SE), std "
        f"{pnl['std']:,.0f}; commission {-rows['commission']['mean']:,.0f} a book.",
        f"At the right vol gamma earns {g['mean']:,.0f} and theta costs {-th['mean']:,.0f} on "
        f"average: together {base['gamma_theta_mean']:+,.1f} +/- {base['gamma_theta_se']:,.1f} "
        f"against the theory's {base['theory']:+,.2f} (z = {base['z']:+.1f}), the "
        f"gamma-scalping identity. Per path they do not cancel: gamma carries "
        f"{g['var_share'] or 0.0:.0%} of the P&L variance, theta "
        f"{th['var_share'] or 0.0:.0%}.",
        (("Hedging to the book's delta at every rebalance leaves no delta term (0 on every "
          "path)" if rows["delta"]["zero"] else
          f"The delta term has mean {rows['delta']['mean']:,.3g} and std "
          f"{rows['delta']['std']:,.3g}")
         + f"; the residual (moves beyond second order, the hedge model's discrete-time "
         f"error) has mean {res['mean']:+,.2f} and std {res['std']:,.1f} against gamma's "
         f"std {g['std']:,.0f}."
         + (f" Also 0 on every path: {', '.join(t for t in zero if t != 'delta')}."
            if [t for t in zero if t != "delta"] else "")),
    ]
    for v in wrong:
        r = runs[v]
        sign = "earns" if v > implied else "loses"
        agree = "matches" if np.sign(r["gamma_theta_mean"]) == np.sign(v - implied) else \
            "does NOT match"
        out.append(
            f"At realised {v:.0%} (hedged at {implied:.0%}) the book {sign} the variance "
            f"spread: gamma + theta {r['gamma_theta_mean']:+,.0f} +/- {r['gamma_theta_se']:,.0f} "
            f"against the theory's {r['theory']:+,.0f} (z = {r['z']:+.1f}); its sign {agree} "
            f"realised^2 - implied^2. P&L {float(r['pnl'].mean()):+,.0f}.")
    text = (f"The book pays its {commission:,.0f} commission back only when gamma + theta "
            f"covers it: at realised vol {even:.2%} or more (theory) against {implied:.0%} "
            f"implied." if even is not None and commission > 0 else "")
    article = break_even_vol(commission + 500.0, theory)
    if article is not None:
        text += (f" At the right vol gamma only pays for theta, so the article's market "
                 f"maker, netting $500 after costs from gamma scalping, is betting on "
                 f"realised vol above implied: here {article:.2%} for "
                 f"{commission + 500:,.0f} of gamma + theta.")
    if text:
        out.append(text.strip())
    return out


def _terms_figure(cfg, runs, worlds, implied, shown):
    """(a) the distribution of each term at the right vol (box plots, 1-99 percentile
    whiskers); (b) gamma + theta per path in every world, with the theory's mean."""
    import matplotlib.pyplot as plt

    base = runs[implied]
    fig, ax = figure(ncols=2, size=(12.5, 4.6))
    names = [t for t in shown if t != "delta" or np.any(base["terms"]["delta"])]
    data = [base["terms"][t] for t in names] + [base["gamma_theta"], base["pnl"]]
    labels = names + [GAMMA_THETA, "P&L"]
    ax[0, 0].boxplot(data, vert=False, whis=(1, 99), showfliers=False, widths=0.6)
    ax[0, 0].set_yticks(np.arange(1, len(labels) + 1), labels)
    ax[0, 0].invert_yaxis()
    ax[0, 0].axvline(0.0, color="k", linewidth=0.5)
    ax[0, 0].set_xlabel(f"$ at day {cfg['days']} per book (> 0 is a gain)")
    ax[0, 0].set_ylabel("P&L term")
    ax[0, 0].set_title(f"each term over the paths, hedged at the right vol ({implied:.0%})\n"
                       "box: quartiles and median; whiskers: 1st and 99th percentiles",
                       fontsize=10)
    ax[0, 0].grid(axis="x", alpha=0.3)

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    samples = [runs[v]["gamma_theta"] for v in worlds]
    lo = min(np.percentile(s, 0.5) for s in samples)
    hi = max(np.percentile(s, 99.5) for s in samples)
    edges = np.linspace(lo, hi, 81)
    for color, v, s in zip(colors, worlds, samples, strict=False):
        ax[0, 1].hist(s, bins=edges, weights=np.full(s.shape, 1.0 / (s.size * (edges[1]
                                                                               - edges[0]))),
                      histtype="step", linewidth=1.4, color=color,
                      label=f"{_label(v, implied)}: mean {runs[v]['gamma_theta_mean']:+,.0f}")
        ax[0, 1].axvline(runs[v]["theory"], color=color, linestyle="--", linewidth=1)
    ax[0, 1].axvline(0.0, color="k", linewidth=0.5)
    ax[0, 1].set_xlabel(f"gamma + theta ($ at day {cfg['days']} per book)\n(0.5-99.5 "
                        "percentile range shown; dashed: theory's mean)")
    ax[0, 1].set_ylabel("density (1/$)")
    ax[0, 1].set_title(f"gamma + theta per path, hedged at {implied:.0%} implied", fontsize=10)
    ax[0, 1].legend(fontsize=8)
    return fig


def _wrong_vol_figure(cfg, runs, worlds, implied, theory, commission, even):
    """(a) the mean of the main terms in each world (+/- 2 SE); (b) gamma + theta's mean
    against the theory over realised vols, with the commission to pay back."""
    fig, ax = figure(ncols=2, size=(13.0, 4.6))
    names = ["gamma", "theta", GAMMA_THETA, "commission", "residual", "P&L"]
    x = np.arange(len(names))
    width = 0.8 / len(worlds)
    for k, v in enumerate(worlds):
        r = runs[v]
        rows = {row["term"]: row for row in r["summary"]}
        means = [rows[t]["mean"] for t in names[:2]] + [r["gamma_theta_mean"]] + [
            rows[t]["mean"] for t in ("commission", "residual", "pnl")]
        ses = [rows[t]["stderr"] for t in names[:2]] + [r["gamma_theta_se"]] + [
            rows[t]["stderr"] for t in ("commission", "residual", "pnl")]
        pos = x - 0.4 + width * (k + 0.5)
        ax[0, 0].bar(pos, means, width=width, yerr=[2 * s for s in ses], capsize=2,
                     label=_label(v, implied))
        ax[0, 0].plot([pos[2] - width / 2, pos[2] + width / 2], [r["theory"]] * 2, color="k",
                      linewidth=1.5, label="theory" if k == 0 else None)
    ax[0, 0].axhline(0.0, color="k", linewidth=0.5)
    ax[0, 0].set_xticks(x, names)
    ax[0, 0].set_xlabel("P&L term")
    ax[0, 0].set_ylabel(f"mean, $ at day {cfg['days']} per book")
    ax[0, 0].set_title(f"mean of each term, hedged at {implied:.0%} (+/- 2 SE; black: "
                       "theory)", fontsize=10)
    ax[0, 0].legend(fontsize=8)

    top = max(max(worlds) * 1.15, (even or 0.0) * 1.1)
    fine = np.linspace(max(0.01, min(worlds) * 0.85), top, 81)
    ax[0, 1].plot(fine * 100, [theory(s) for s in fine], color="k",
                  label="theory: E[sum 1/2 Gamma S^2 (dS^2/S^2 - implied^2 dt)]")
    ax[0, 1].errorbar([v * 100 for v in worlds], [runs[v]["gamma_theta_mean"] for v in worlds],
                      yerr=[2 * runs[v]["gamma_theta_se"] for v in worlds], fmt="o",
                      color="tab:blue", capsize=3, label="measured: mean +/- 2 SE")
    ax[0, 1].axhline(commission, color="tab:red", linestyle=":",
                     label=f"commission to pay back (${commission:,.0f})")
    if even is not None:
        ax[0, 1].axvline(even * 100, color="tab:red", linewidth=0.6,
                         label=f"break-even realised vol ({even:.1%})")
    ax[0, 1].axhline(0.0, color="k", linewidth=0.5)
    ax[0, 1].axvline(implied * 100, color="tab:gray", linestyle="--", linewidth=0.8,
                     label=f"implied ({implied:.0%})")
    ax[0, 1].set_xlabel("realised vol of the world (%)")
    ax[0, 1].set_ylabel(f"gamma + theta, $ at day {cfg['days']} per book")
    ax[0, 1].set_title("the gamma-theta mismatch: measured against theory", fontsize=10)
    ax[0, 1].legend(fontsize=7)
    ax[0, 1].grid(alpha=0.3)
    return fig
