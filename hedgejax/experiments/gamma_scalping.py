"""gamma-scalping: what a delta-hedged long option earns when realised volatility differs from
the implied volatility it was bought at, against the theory.

Setup. A trader BUYS `contracts` at-the-money straddles (a call and a put at `strike`; or
calls, `position = "call"`) maturing at `maturity`, at the Black-Scholes price at
`implied_vol`, and delta-hedges them daily (252 days a year) to maturity with Black-Scholes
deltas at `implied_vol` (`hedge_model=BlackScholes(spot, implied_vol)`), while the world is a
Black-Scholes world whose volatility is `realised_vol`, swept over `realised_vols`, with
real-world drift `drift`. Costs `cost_rate` (proportional, 0 by default: frictionless).

Theory. With continuous hedging at the implied vol, the P&L in time-T money is, path by path,

    P&L = integral_0^T e^{r(T-t)} 1/2 Gamma_imp(t, S_t) S_t^2 (realised^2 - implied^2) dt,

Gamma_imp the hedge model's gamma of the book. Its expectation, the "theory" column, is
computed here without simulation: E[Gamma_imp(t, S_t) S_t^2] has a closed form (for the
call or put, Gamma S^2 = S phi(d1) / (implied sqrt(tau)), and with x = log S_t ~ N(m, v) in
the world, E[e^x N(x; c, s^2)] = N(m; c, v + s^2) exp(m* + v*/2), the product of two normal
densities, with c = log K - (r + implied^2/2) tau, s^2 = implied^2 tau, v* = v s^2 / (v + s^2),
m* = (m s^2 + c v) / (v + s^2)), and the time integral is a 200-node Gauss-Legendre rule.

The alternative is to hedge at the realised vol (if one knew it): then the continuous-hedge
P&L is deterministic, e^{rT} (BS(realised) - BS(implied)) x quantity, the "bs_difference"
column (the premium you would have been charged at the right vol, less what you paid). In
the risk-neutral world (`drift` = `rate`, the default) the two expectations are equal (Ito
plus the Black-Scholes equation; the run checks it numerically) and discrete hedging does not
change either mean (any hedge's financed gains have zero mean under the risk-neutral drift),
so the measured means should match the theory within Monte Carlo error: the difference is
the path dependence, not the mean. With `drift` != `rate` the implied-vol hedge earns less
than the BS difference (spot drifts away from the strike, where gamma is) and daily hedging
adds an O(dt) bias of its own, which shows up in the realised-vol hedge's mean.

Conventions (docs/architecture.md, "Conventions"): the user holds the book; hedge in shares;
P&L in time-T money and per book of `contracts` straddles; stderr is the standard error of
the mean P&L.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ._common import cost_phrase, daily_grid, figure, plural
from ._framework import Between, Context, Outcome, Positive

NAME = "gamma-scalping"
QUESTION = ("A delta-hedged long straddle bought at implied vol: what does it earn as realised "
            "vol moves away from implied, against 1/2 * integral Gamma S^2 (realised^2 - "
            "implied^2) dt and against hedging at the realised vol?")
BOUNDS = {"contracts": Positive(), "spot": Positive(), "strike": Positive(),
          "maturity": Positive(), "implied_vol": Positive(), "realised_vols": Positive(),
          "rate": Between(-0.5, 0.5), "drift": Between(-2.0, 2.0),
          "cost_rate": Between(0.0, 0.1, closed=True)}

POSITIONS = {"straddle": 2.0, "call": 1.0}   # gamma multiple of one call


def expected_dollar_gamma(t: np.ndarray, spot: float, strike: float, maturity: float,
                          implied: float, realised: float, drift: float,
                          rate: float) -> np.ndarray:
    """E[Gamma_imp(t, S_t) S_t^2] of ONE call (or put) at `implied` vol, under a log-normal
    world with `realised` vol and `drift` (closed form; t in [0, maturity))."""
    tau = maturity - t
    m = math.log(spot) + (drift - 0.5 * realised ** 2) * t
    v = realised ** 2 * t
    s2 = implied ** 2 * tau
    c = math.log(strike) - (rate + 0.5 * implied ** 2) * tau
    total = v + s2
    density = np.exp(-(m - c) ** 2 / (2 * total)) / np.sqrt(2 * np.pi * total)
    m_star = (m * s2 + c * v) / total
    v_star = v * s2 / total
    return density * np.exp(m_star + 0.5 * v_star)


@functools.lru_cache
def _legendre(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(nodes)


def theory_mean_pnl(quantity_gamma: float, spot: float, strike: float, maturity: float,
                    implied: float, realised: float, drift: float, rate: float,
                    nodes: int = 200) -> float:
    """E[integral_0^T e^{r(T-t)} 1/2 Gamma_imp S^2 (realised^2 - implied^2) dt] for a book
    whose gamma is `quantity_gamma` calls' (Gauss-Legendre in time)."""
    x, w = _legendre(nodes)
    t = 0.5 * maturity * (x + 1.0)
    f = (np.exp(rate * (maturity - t)) * 0.5 * (realised ** 2 - implied ** 2)
         * expected_dollar_gamma(t, spot, strike, maturity, implied, realised, drift, rate))
    return float(quantity_gamma * 0.5 * maturity * np.sum(w * f))


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    from math import erf

    return 0.5 * (1.0 + np.vectorize(erf)(np.asarray(x) / math.sqrt(2.0)))


def bs_value(position: str, quantity: float, spot: float, strike: float, maturity: float,
             vol: np.ndarray, rate: float) -> np.ndarray:
    """Black-Scholes value of `quantity` calls or straddles (NumPy float64, vectorised in
    vol): the reference curve, independent of hedgejax's pricer."""
    vol = np.asarray(vol, dtype=float)
    sd = vol * math.sqrt(maturity)
    d1 = (math.log(spot / strike) + rate * maturity) / sd + 0.5 * sd
    disc = strike * math.exp(-rate * maturity)
    call = spot * _norm_cdf(d1) - disc * _norm_cdf(d1 - sd)
    if position == "call":
        return quantity * call
    return quantity * (2 * call - spot + disc)   # call + put, by put-call parity


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import hedgejax as hj

    if cfg["position"] not in POSITIONS:
        raise ValueError(f"config key 'position' must be one of {', '.join(POSITIONS)}, got "
                         f"{cfg['position']!r}")
    grid = daily_grid(cfg["maturity"])
    n_steps = grid.n_steps
    T = grid.maturity
    spot, strike, rate = cfg["spot"], cfg["strike"], cfg["rate"]
    implied, drift, contracts = cfg["implied_vol"], cfg["drift"], cfg["contracts"]
    instruments = [hj.EuropeanCall(strike, T)]
    if cfg["position"] == "straddle":
        instruments.append(hj.EuropeanPut(strike, T))
    book = hj.Book(instruments, quantities=[contracts] * len(instruments))
    gamma_qty = contracts * POSITIONS[cfg["position"]]
    costs = hj.Proportional(cfg["cost_rate"])
    implied_model = hj.BlackScholes(spot, implied, rate)
    premium = float(hj.price(implied_model, book))
    growth = math.exp(rate * T)
    key, n = ctx.key, cfg["paths"]
    vols = sorted(set(cfg["realised_vols"]))

    def derman_kamal(vol: float) -> float:
        """Derman-Kamal std of an option hedged n_steps times at its own vol (see the
        dynamic-vs-static experiment): sqrt(pi/4) vol vega / sqrt(N)."""
        sd = vol * math.sqrt(T)
        d1 = (math.log(spot / strike) + rate * T) / sd + 0.5 * sd
        vega = gamma_qty * spot * math.sqrt(T) * math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi)
        return math.sqrt(math.pi / 4) * vol * vega / math.sqrt(n_steps)

    table, samples = [], {}
    for realised in ctx.track(vols, "realised vols"):
        world = hj.BlackScholes(spot, realised, rate, drift=drift)
        realised_model = hj.BlackScholes(spot, realised, rate)
        at_implied = hj.hedge(world, book, hj.DeltaHedge(), costs, grid, n, key,
                              hedge_model=implied_model)
        at_realised = hj.hedge(world, book, hj.DeltaHedge(), costs, grid, n, key,
                               hedge_model=realised_model)
        pnl = np.asarray(at_implied.pnl, dtype=float)
        # hedge() books V0 at the hedge model's price; the straddle was paid at implied vol.
        fair = float(at_realised.initial_price)
        pnl_r = np.asarray(at_realised.pnl, dtype=float) + (fair - premium) * growth
        se = float(np.std(pnl, ddof=1) / math.sqrt(n))
        theory = theory_mean_pnl(gamma_qty, spot, strike, T, implied, realised, drift, rate)
        table.append({
            "realised_vol": realised, "spread": realised - implied,
            "mean_pnl": float(pnl.mean()), "stderr": se, "theory_mean": theory,
            "z": (float(pnl.mean()) - theory) / se if se > 0 else 0.0,
            "bs_difference": (fair - premium) * growth,
            "std_pnl": float(np.std(pnl, ddof=1)), "p_loss": float(np.mean(pnl < 0)),
            "realised_hedge_mean": float(pnl_r.mean()),
            "realised_hedge_std": float(np.std(pnl_r, ddof=1)),
            "realised_hedge_p_loss": float(np.mean(pnl_r < 0)),
            "realised_hedge_std_dk": derman_kamal(realised),
            "mean_cost": float(np.mean(at_implied.cost))})
        samples[realised] = pnl

    # the theory and the BS difference on a fine grid of realised vols, for the figure
    fine = np.linspace(min(vols), max(vols), 81)
    theory_curve = [theory_mean_pnl(gamma_qty, spot, strike, T, implied, s, drift, rate)
                    for s in fine]
    premium64 = float(bs_value(cfg["position"], contracts, spot, strike, T, implied, rate))
    bs_curve = list((bs_value(cfg["position"], contracts, spot, strike, T, fine, rate)
                     - premium64) * growth)
    gap = max(abs(a - b) for a, b in zip(theory_curve, bs_curve, strict=True))
    # at-the-money-forward vega of the book per 1.00 of vol (closed form, per unit of gamma)
    d1 = (math.log(spot / strike) + (rate + 0.5 * implied ** 2) * T) / (implied * math.sqrt(T))
    vega = gamma_qty * spot * math.sqrt(T) * math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi)
    worst = max(table, key=lambda r: abs(r["z"]))
    top = table[-1]
    findings = [
        f"Long {plural(contracts, cfg['position'])} at {implied:.0%} implied vol cost "
        f"{premium:,.3f} (vega {vega:,.2f} per 1.00 of vol, {vega / 100:,.3f} per vol point); "
        f"hedged daily ({n_steps} rebalances) at the implied vol, {n:,} paths per realised vol.",
        f"Mean P&L against the gamma-integral theory: the largest gap over the "
        f"{len(table)} realised vols is {worst['z']:+.1f} standard errors (at "
        f"{worst['realised_vol']:.1%}: {worst['mean_pnl']:,.3f} +/- {worst['stderr']:,.3f} "
        f"vs {worst['theory_mean']:,.3f}).",
        f"At {top['realised_vol']:.1%} realised ({top['spread'] * 100:+.1f} vol points over "
        f"implied) the "
        f"implied-vol hedge earns {top['mean_pnl']:,.3f} on average with std "
        f"{top['std_pnl']:,.3f} and loses money on {top['p_loss']:.2%} of paths; hedging at "
        f"the realised vol earns {top['realised_hedge_mean']:,.3f} (BS difference "
        f"{top['bs_difference']:,.3f}) with std {top['realised_hedge_std']:,.3f}, losing on "
        f"{top['realised_hedge_p_loss']:.2%} of paths. That std is not 0 because daily "
        f"hedging is not continuous: Derman-Kamal at the realised vol gives "
        f"{top['realised_hedge_std_dk']:,.3f}.",
    ]
    above = [r for r in table if r["spread"] > 0]
    if above:
        first = above[0]
        findings.append(
            f"Even {first['spread'] * 100:.1f} vol points of realised over implied leave the "
            f"implied-vol "
            f"hedge losing on {first['p_loss']:.1%} of paths (mean {first['mean_pnl']:,.3f}, "
            f"std {first['std_pnl']:,.3f}): where spot travels decides how much of the "
            f"variance spread meets gamma.")
    if abs(drift - rate) < 1e-12:
        findings.append(
            f"With drift = rate the gamma integral and the BS difference are the same number "
            f"(largest gap {gap:.1e} over the sweep): hedging at implied or at realised vol "
            "has the same expected P&L, only its dispersion differs.")
    else:
        gaps_imp = [r["mean_pnl"] - r["theory_mean"] for r in table]
        gaps_real = [r["realised_hedge_mean"] - r["bs_difference"] for r in table]
        findings.append(
            f"With drift {drift:g} != rate {rate:g} the gamma integral and the BS difference "
            f"part by up to {gap:,.3f}. Daily hedging under a drift has an O(dt) bias of its "
            f"own: the realised-vol hedge's mean exceeds its continuous-time value (the BS "
            f"difference) by {min(gaps_real):+.4f} to {max(gaps_real):+.4f} over the sweep, "
            f"and the implied-vol hedge's mean exceeds the (continuous-time) theory by "
            f"{min(gaps_imp):+.4f} to {max(gaps_imp):+.4f}.")

    fig, ax = figure(ncols=3, size=(16.0, 4.3))
    spreads = np.array([r["spread"] for r in table]) * 100
    ax[0, 0].plot((fine - implied) * 100, theory_curve, color="k",
                  label="theory: E[1/2 int Gamma S^2 (real^2 - imp^2) dt]")
    ax[0, 0].plot((fine - implied) * 100, bs_curve, color="tab:gray", linestyle="--",
                  label="BS(realised) - BS(implied)")
    ax[0, 0].errorbar(spreads, [r["mean_pnl"] for r in table],
                      yerr=[2 * r["stderr"] for r in table], fmt="o", color="tab:blue",
                      capsize=3, label="hedged at implied: mean +/- 2 SE")
    ax[0, 0].plot(spreads, [r["realised_hedge_mean"] for r in table], "x", color="tab:red",
                  label="hedged at realised: mean")
    ax[0, 0].axhline(0.0, color="k", linewidth=0.5)
    ax[0, 0].set_xlabel("realised - implied vol (vol points)")
    ax[0, 0].set_ylabel("mean P&L at expiry ($ per book)")
    ax[0, 0].set_title(f"long {plural(contracts, cfg['position'])}, implied {implied:.0%}, "
                       "hedged daily", fontsize=10)
    ax[0, 0].legend(fontsize=7)
    ax[0, 1].errorbar(spreads, [r["mean_pnl"] - r["theory_mean"] for r in table],
                      yerr=[2 * r["stderr"] for r in table], fmt="o", color="tab:blue",
                      capsize=3, label="hedged at implied - theory, +/- 2 SE")
    ax[0, 1].plot(spreads, [r["realised_hedge_mean"] - r["bs_difference"] for r in table],
                  "x", color="tab:red", label="hedged at realised - BS difference")
    ax[0, 1].axhline(0.0, color="k", linewidth=0.5)
    ax[0, 1].set_xlabel("realised - implied vol (vol points)")
    ax[0, 1].set_ylabel("mean P&L - reference ($)")
    ax[0, 1].set_title("measured minus reference (0 = agreement)", fontsize=10)
    ax[0, 1].legend(fontsize=7)
    ax[0, 2].plot(spreads, [r["std_pnl"] for r in table], "o-", label="hedged at implied")
    ax[0, 2].plot(spreads, [r["realised_hedge_std"] for r in table], "x-",
                  label="hedged at realised")
    ax[0, 2].plot(spreads, [r["realised_hedge_std_dk"] for r in table], ":", color="k",
                  label="Derman-Kamal at realised vol")
    ax[0, 2].set_xlabel("realised - implied vol (vol points)")
    ax[0, 2].set_ylabel("P&L std ($ per book)")
    ax[0, 2].set_title("dispersion of the P&L", fontsize=10)
    ax[0, 2].legend(fontsize=7)

    caption = (f"Long {plural(contracts, 'at-the-money ' + cfg['position'])} (strike "
               f"{strike:g}, {plural(T, 'year')}) bought at {implied:.0%} implied vol for "
               f"${premium:,.3f}, "
               f"delta-hedged daily ({n_steps} rebalances) at the implied vol"
               f"{'' if cfg['cost_rate'] == 0 else ', ' + cost_phrase(cfg['cost_rate'])}, in "
               f"Black-Scholes worlds at each realised vol (drift {drift:g}); {n:,} paths each. "
               f"Money in $ per book at expiry; P&L > 0 is a gain. Vols are fractions (0.2 = "
               f"20%); theory = E[1/2 int Gamma S^2 (realised^2 - implied^2) dt]; z = (mean - "
               f"theory) / SE; BS difference = what hedging at the realised vol earns in "
               f"continuous time.")
    return Outcome(
        table=table, findings=findings, title="gamma scalping: mean P&L against theory",
        caption=caption,
        headers={"realised_vol": "realised vol", "spread": "realised - implied vol",
                 "stderr": "SE of mean ($)", "theory_mean": "theory mean ($)",
                 "z": "z vs theory", "bs_difference": "BS difference ($)",
                 "p_loss": "P(loss)", "realised_hedge_mean": "mean P&L at realised ($)",
                 "realised_hedge_std": "P&L std at realised ($)",
                 "realised_hedge_p_loss": "P(loss) at realised",
                 "realised_hedge_std_dk": "Derman-Kamal std at realised ($)",
                 "mean_cost": "mean cost ($)"},
        # on the terminal: the comparison with theory and the dispersion (80 columns)
        display=["realised_vol", "mean_pnl", "stderr", "theory_mean", "z", "std_pnl",
                 "p_loss", "realised_hedge_std"],
        results={"premium": premium, "vega": vega, "n_steps": n_steps,
                 "theory_vs_bs_difference_max_gap": gap,
                 "curve": {"realised_vol": fine, "theory_mean": theory_curve,
                           "bs_difference": bs_curve},
                 "pnl_quantiles": {f"{s:g}": np.percentile(p, [1, 5, 25, 50, 75, 95, 99])
                                   for s, p in samples.items()}},
        figures={"mean_pnl": fig})
