"""portfolio-insurance: a synthetic protective put, what it costs and where it fails.

An insurer holds `shares` shares (spot `spot`) and wants them worth at least the floor
shares x `floor` in `days` trading days (T = days / 252 years). Instead of buying puts it
replicates them by trading the underlying (`hj.protective_put`: hedging a short put
delta-neutral, rebalanced every `rebalance_every` days, paying `cost_rate` of the traded
value). The insurer believes Black-Scholes at `total_vol`: its deltas drive the
replication and its put price is the premium it sets aside. At T the insured value is
shares x max(S_T, floor) + replication error (`InsuranceResult`: `value`, `shortfall` =
max(floor value - value, 0)); all money is in time-T currency unless said otherwise.

Three worlds, all risk-neutral (drift = `rate`) so that prices are references:

- diffusion: Black-Scholes at `total_vol` (the insurer's model is right);
- jumps: Merton with jumps of log-size N(`jump_mean`, `jump_std`^2) arriving `jump_rate`
  times a year and a diffusion vol chosen so that the total variance is the same,
  vol^2 + jump_rate (jump_mean^2 + jump_std^2) = total_vol^2 (the insurer's vol is the
  right total vol; only the path is different);
- crash: the diffusion paths with one close-to-close fall of `crash_size` on day
  `crash_day` on every path (the story of 19 October 1987, when the Dow Jones index fell
  22.6% in one day and portfolio insurers, who sell as prices fall, could not trade at the
  prices their replication assumed). Built with `hj.simulate` and replayed with
  `hj.HistoricalPaths`.

World labels in the table: "diffusion", "jumps", "crash". Measured: the cost of insurance
in t0 money, premium - e^{-rT} E[replication error] (what the insurer pays on average for
the floor, trading costs included) against the premium and against the world's fair put
value (Black-Scholes, or Merton's series price: the expected cost before trading costs is
the world's put value, since the hedge gains have zero mean under the risk-neutral drift);
the gap risk: probability of ending below the floor (at all, and by more than 1% of it,
after and before trading costs: the premium set aside does not pay for them, so they eat
into the floor), mean shortfall, mean shortfall when short, the worst path.
Reference for the crash: the put's value change over the crash day that the held shares do
not replicate, -[P(t_c, S_after) - P(t_{c-1}, S_before) - h (S_after - S_before)] with h the
shares held over that day (Black-Scholes at `total_vol`, NumPy), accrued to T: the mean
replication error on crash paths should be about this gap loss plus the ordinary error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import cost_phrase, figure, histograms, log_ticks, plural
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "portfolio-insurance"
QUESTION = ("What does insuring a stock portfolio with a synthetic (replicated) put cost, and "
            "how often does it miss its floor when prices jump or crash?")
BOUNDS = {"shares": Positive(), "spot": Positive(), "floor": Positive(), "days": AtLeast(1),
          "rate": Between(-1.0, 1.0), "total_vol": Positive(), "jump_rate": NonNegative(),
          "jump_mean": Between(-5.0, 5.0), "jump_std": NonNegative(),
          "rebalance_every": AtLeast(1), "cost_rate": NonNegative(),
          "crash_size": Between(0.0, 1.0), "crash_day": AtLeast(1)}


def _ncdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(x) / math.sqrt(2.0)))


def bs_put(spot, strike: float, tau, vol: float, rate: float) -> np.ndarray:
    """Black-Scholes put price and delta, elementwise (NumPy, float64); tau > 0."""
    spot = np.asarray(spot, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    sd = vol * np.sqrt(tau)
    d1 = (np.log(spot / strike) + (rate + 0.5 * vol * vol) * tau) / sd
    price = strike * np.exp(-rate * tau) * _ncdf(sd - d1) - spot * _ncdf(-d1)
    return price, _ncdf(d1) - 1.0


def _crash_paths(base: np.ndarray, day: int, size: float) -> np.ndarray:
    """`base` paths with every price from column `day` on multiplied by 1 - size."""
    out = base.astype(np.float64).copy()
    out[:, day:] *= 1.0 - size
    return out


def _gap_loss(paths: np.ndarray, day: int, every: int, strike: float, maturity: float,
              dt: float, vol: float, rate: float, shares: float) -> np.ndarray:
    """Per-path replication error (time-T money) from the crash step alone: the put's value
    change from t_{day-1} to t_day that the shares held over it (set at the last rebalance
    on or before day - 1) do not replicate."""
    before, after = paths[:, day - 1], paths[:, day]
    last = ((day - 1) // every) * every
    _, delta_held = bs_put(paths[:, last], strike, maturity - last * dt, vol, rate)
    p_before, _ = bs_put(before, strike, maturity - (day - 1) * dt, vol, rate)
    if day * dt < maturity - 1e-12:
        p_after, _ = bs_put(after, strike, maturity - day * dt, vol, rate)
    else:
        p_after = np.maximum(strike - after, 0.0)
    # holding the put gains p_after - p_before; the replication (delta_held shares financed
    # at the rate) gains delta_held (after - before e^{r dt})
    missed = (p_after - p_before) - delta_held * (after - before * math.exp(rate * dt))
    return -shares * missed * math.exp(rate * (maturity - day * dt))


def _row(world: str, every: int, ins, premium: float, fair: float | None, rate: float,
         maturity: float, predicted: np.ndarray | None) -> dict[str, Any]:
    value = np.asarray(ins.value, dtype=np.float64)
    floor = float(ins.floor)
    error = np.asarray(ins.replication_error, dtype=np.float64)
    short = np.asarray(ins.shortfall, dtype=np.float64)
    disc = math.exp(-rate * maturity)
    n = value.size
    below = short > 0
    return {
        "world": world,
        "rebalance": "daily" if every == 1 else f"every {every} days",
        "premium": premium,
        "fair_put_value": fair,
        "mean_cost_to_insure": premium - disc * float(np.mean(error)),
        "stderr_cost": disc * float(np.std(error, ddof=1) / np.sqrt(n)),
        "trading_cost": disc * float(np.mean(ins.cost)),
        "std_replication_error": float(np.std(error, ddof=1)),
        "p_below_floor": float(np.mean(below)),
        "p_below_floor_by_1pct": float(np.mean(value < 0.99 * floor)),
        "p_below_by_1pct_before_costs": float(np.mean(value + np.asarray(ins.cost)
                                                      < 0.99 * floor)),
        "mean_shortfall": float(np.mean(short)),
        # no path short: the mean over no paths is left empty, not 0
        "mean_shortfall_when_short": float(np.mean(short[below])) if below.any() else None,
        "max_shortfall": float(np.max(short)),
        "predicted_gap_error": None if predicted is None else float(np.mean(predicted)),
        "mean_replication_error": float(np.mean(error)),
    }


HEADERS = {
    "world": "world",
    "rebalance": "rebalance",
    "premium": "premium set aside ($ at t0)",
    "fair_put_value": "world's fair put value ($)",
    "mean_cost_to_insure": "mean cost to insure ($)",
    "stderr_cost": "std error of cost ($)",
    "trading_cost": "trading costs ($)",
    "std_replication_error": "replication error std ($ at T)",
    "p_below_floor": "P(below floor)",
    "p_below_floor_by_1pct": "P(> 1% below floor)",
    "p_below_by_1pct_before_costs": "P(> 1% below floor), before costs",
    "mean_shortfall": "mean shortfall ($)",
    "mean_shortfall_when_short": "mean shortfall when below ($ at T)",
    "max_shortfall": "worst shortfall ($)",
    "predicted_gap_error": "predicted crash-day error ($ at T)",
    "mean_replication_error": "mean replication error ($ at T)",
}


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax

    import hedgejax as hj

    shares, spot, strike, rate = cfg["shares"], cfg["spot"], cfg["floor"], cfg["rate"]
    days, sigma = cfg["days"], cfg["total_vol"]
    # float32-representable, so the option's (float32) expiry falls exactly on the grid's end
    maturity = float(np.float32(days / 252.0))
    dt = 1.0 / 252.0
    jump_var = cfg["jump_rate"] * (cfg["jump_mean"] ** 2 + cfg["jump_std"] ** 2)
    if jump_var >= sigma * sigma:
        raise ValueError(
            f"config key 'jump_rate' x (jump_mean^2 + jump_std^2) = {jump_var:.4g} must be "
            f"below total_vol^2 = {sigma * sigma:.4g} (the jumps' share of the variance)")
    if cfg["crash_day"] > days:
        raise ValueError(f"config key 'crash_day' must be at most days = {days}, got "
                         f"{cfg['crash_day']}")
    everies = cfg["rebalance_every"]
    if len(set(everies)) != len(everies):
        raise ValueError("config key 'rebalance_every' lists a value twice")

    grid = hj.TimeGrid(maturity, days)
    believed = hj.BlackScholes(spot, sigma, rate)
    diffusion = believed
    jumps = hj.Merton(spot, math.sqrt(sigma * sigma - jump_var), cfg["jump_rate"],
                      cfg["jump_mean"], cfg["jump_std"], rate)
    put = hj.EuropeanPut(strike, maturity)
    premium = shares * float(hj.price(believed, put))
    fair = {"diffusion": premium, "jumps": shares * float(hj.price(jumps, put))}
    costs = hj.Proportional(cfg["cost_rate"])
    n, key = cfg["paths"], ctx.key
    k_diff, k_jump = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
    crash_world = _crash_paths(np.asarray(hj.simulate(diffusion, grid, n, k_diff)),
                               cfg["crash_day"], cfg["crash_size"])
    crash = hj.HistoricalPaths(crash_world, rate=rate)
    worlds = {"diffusion": (diffusion, k_diff), "jumps": (jumps, k_jump),
              "crash": (crash, k_diff)}
    labels = {"diffusion": "diffusion", "jumps": "jumps", "crash": "crash"}

    table, values = [], {}
    runs = [(w, every) for w in worlds for every in everies]
    for w, every in ctx.track(runs, "replicating the put"):
        model, k = worlds[w]
        ins = hj.protective_put(model, strike, grid, n, k, shares=shares,
                                strategy=hj.DeltaHedge(every=every), costs=costs,
                                hedge_model=believed)
        predicted = None
        if w == "crash":
            predicted = _gap_loss(crash_world, cfg["crash_day"], every, strike, maturity, dt,
                                  sigma, rate, shares)
        table.append(_row(labels[w], every, ins, premium, fair.get(w), rate, maturity,
                          predicted))
        values[(w, every)] = np.asarray(ins.value - ins.floor, dtype=np.float64)

    first = everies[0]
    fig, ax = figure(ncols=2, size=(12.5, 4.8))
    fig.suptitle(f"{shares:,g} share{'' if shares == 1 else 's'} at {spot:g} insured to a "
                 f"floor of {shares * strike:,g} in {days} trading days by a replicated put: "
                 f"{n:,} paths per world",
                 fontsize=11)
    histograms(ax[0, 0], {labels[w]: values[(w, first)] for w in worlds},
               xlabel="insured value - floor at T ($)")
    ax[0, 0].axvline(0.0, color="k", lw=0.8)
    ax[0, 0].set_title(f"rebalanced {'daily' if first == 1 else f'every {first} days'} "
                       "(< 0: below the floor)", fontsize=10)
    lo = min(float(np.min(v)) for v in values.values())
    edges = np.linspace(min(lo, -0.01 * shares * strike), 0.0, 50)
    for w in worlds:
        for every in everies:
            v = values[(w, every)]
            ax[0, 1].hist(v[v < 0], bins=edges, histtype="step", linewidth=1.3,
                          weights=np.full(int(np.sum(v < 0)), 1.0 / v.size),
                          label=f"{w}, {'daily' if every == 1 else f'every {every}d'}")
    ax[0, 1].set_yscale("log")
    log_ticks(ax[0, 1].yaxis)
    ax[0, 1].set_xlabel("insured value - floor at T ($, paths below the floor only)")
    ax[0, 1].set_ylabel("fraction of all paths per bin (log scale)")
    ax[0, 1].set_title("where the floor fails", fontsize=10)
    ax[0, 1].legend(fontsize=7)

    rows = {(r["world"], r["rebalance"]): r for r in table}
    tag = {every: "daily" if every == 1 else f"every {every} days" for every in everies}
    d, j, c = (rows[(labels[w], tag[first])] for w in ("diffusion", "jumps", "crash"))
    floor_value = shares * strike
    findings = [
        f"Insuring {shares:g} shares at {spot:g} to a floor of {floor_value:g} for {days} "
        f"days: the Black-Scholes premium at {sigma:.0%} is {premium:.3f}; replicating it "
        f"{tag[first]} with {cfg['cost_rate']:.2%} costs {d['mean_cost_to_insure']:.3f}"
        f" +/- {d['stderr_cost']:.3f} on average in a diffusion world (of which "
        f"{d['trading_cost']:.3f} trading costs; the put is worth {d['fair_put_value']:.3f}).",
        f"With jumps of the same total variance the same replication costs "
        f"{j['mean_cost_to_insure']:.3f} +/- {j['stderr_cost']:.3f}; before trading costs "
        f"{j['mean_cost_to_insure'] - j['trading_cost']:.3f}, which is the jump world's fair "
        f"put value {j['fair_put_value']:.3f}, not the {premium:.3f} the insurer set aside "
        f"(diffusion: {d['mean_cost_to_insure'] - d['trading_cost']:.3f} against "
        f"{d['fair_put_value']:.3f}).",
        f"Ending more than 1% below the floor ({tag[first]}): "
        f"{d['p_below_floor_by_1pct']:.2%} of paths with diffusion, "
        f"{j['p_below_floor_by_1pct']:.2%} with jumps, {c['p_below_floor_by_1pct']:.2%} in "
        f"the crash scenario; mean shortfall {d['mean_shortfall']:.3f}, "
        f"{j['mean_shortfall']:.3f}, {c['mean_shortfall']:.3f}; worst path "
        f"{d['max_shortfall']:.2f}, {j['max_shortfall']:.2f}, {c['max_shortfall']:.2f}. "
        f"Before trading costs (which the premium set aside does not cover): "
        f"{d['p_below_by_1pct_before_costs']:.2%}, {j['p_below_by_1pct_before_costs']:.2%}, "
        f"{c['p_below_by_1pct_before_costs']:.2%}.",
        f"The crash of {cfg['crash_size']:.0%} in one day costs the replication "
        f"{c['mean_replication_error']:+.3f} on average: the gap loss predicted from the "
        f"put's convexity over that day, {c['predicted_gap_error']:+.3f}, plus the ordinary "
        f"error of the same paths without the crash, {d['mean_replication_error']:+.3f}, "
        f"makes {c['predicted_gap_error'] + d['mean_replication_error']:+.3f}.",
    ]
    if len(everies) > 1:
        last = everies[-1]
        dl, jl = (rows[(labels[w], tag[last])] for w in ("diffusion", "jumps"))
        findings.append(
            f"Rebalancing {tag[last]} instead of {tag[first]}: trading costs "
            f"{dl['trading_cost']:.3f} vs {d['trading_cost']:.3f}; replication error std "
            f"{dl['std_replication_error']:.3f} vs {d['std_replication_error']:.3f} "
            f"(diffusion) and {jl['std_replication_error']:.3f} vs "
            f"{j['std_replication_error']:.3f} (jumps).")
    return Outcome(
        table=table, findings=findings,
        title="synthetic protective put: cost and gap risk",
        caption=(f"The holding: {plural(shares, 'share')} at {spot:g} insured to a floor of "
                 f"{floor_value:,g} ({strike:g} a share) in {days} trading days by replicating "
                 f"a put with shares (Black-Scholes deltas at {sigma:.0%}), "
                 f"{cost_phrase(cfg['cost_rate'], 'the value traded')}; {n:,} paths per row. "
                 f"Money in $ for the whole holding: premium and costs at t0, shortfalls and "
                 f"errors at T; "
                 f"replication error > 0 is a gain to the insurer; shortfall = max(floor - "
                 f"insured value, 0) >= 0 is the loss below the floor; probabilities are "
                 f"fractions of paths."),
        headers=HEADERS,
        # the terminal: cost and gap risk after costs (80 columns); the files keep all
        display=["world", "rebalance", "mean_cost_to_insure", "fair_put_value",
                 "trading_cost", "p_below_floor_by_1pct", "mean_shortfall", "max_shortfall"],
        results={"premium": premium, "fair_put_value": fair, "floor_value": floor_value,
                 "maturity_years": maturity,
                 "jump_world": {"diffusion_vol": math.sqrt(sigma * sigma - jump_var),
                                "total_vol": sigma, "jump_variance": jump_var}},
        figures={"insured_value": fig})
