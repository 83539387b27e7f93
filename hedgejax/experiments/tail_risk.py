"""tail-risk: a rolling programme of out-of-the-money puts against its dynamic replication.

Setup. An investor holds one unit of an equity index (spot `spot`, 1 unit = the whole
portfolio) for `days` trading days (252 a year) in a Merton (1976) jump-diffusion world with
a real-world drift `drift` (the equity premium is drift - rate): diffusion vol `vol`, jumps
at `jump_rate` a year with log size N(`jump_mean`, `jump_std`^2). Everything is measured in
% of the initial portfolio value; cash earns `rate` (continuous).

- unprotected: the index alone.
- put programme (static, rolling): at t0 and every `roll_days` days it buys one put per unit
  held, strike `moneyness` x spot at the roll, maturity `put_days` days, and sells the put it
  held back at its model value. The puts are bought and sold at the PRICING model's value
  (`pricing`): "merton", the world's own jump-diffusion but risk-neutral with the jump
  intensity multiplied by `jump_premium` (a jump-risk premium, Pan 2002), or "heston", a
  Heston (1993) stochastic-vol surface (`heston_*`) whose negative spot-vol correlation
  gives the index skew. The world stays Merton either way: the gap between the pricing model
  and the world is the market's skew (variance / jump) premium that the buyer pays. A
  half-spread `put_spread` (fraction of the model value) is paid on each option trade. The
  premium is financed from the cash account. The put still held at the end is valued at its
  model price.
- dynamic replication (Leland and Rubinstein's synthetic put, as in portfolio insurance):
  no options; it holds 1 + Delta_put shares, the Black-Scholes delta of the SAME put (same
  strike, same roll dates) at the put's implied vol at purchase (`hj.implied_vol` of the
  model premium), rebalanced every `rebalance_days` days and at every roll, paying
  `cost_rate` of the traded value. It pays no premium: it pays for protection by selling
  after falls and buying after rises (the gamma cost ~ 1/2 Gamma sigma_realised^2 S^2 dt),
  which is cheaper than the premium when realised vol is below the implied one, and it
  cannot trade through a gap: a jump moves the price between two rebalances.

Pricing is exact (`hj.price`, vectorised over paths) at every trade and at the end; the
daily marks of the held put (used only for the drawdowns and the crash-day losses) come from
a table of the unit-strike put price over log-moneyness (4,001 points, one column per day
to expiry, linear interpolation: below 1e-4 of the strike), since pricing and
puts are homogeneous of degree 1 in (spot, strike).

Crash paths and calm paths. `hj.simulate` returns spot paths only, so the world is simulated
a second time on the same key with jump_rate = 0: the diffusion draws are the same
(counter-based streams, stream 0 for the diffusion), so the difference of the daily log
returns plus the compensator jump_rate kbar dt is each day's total log jump exactly (to
float rounding). A crash day is a day whose log jump is <= log(1 - `crash_threshold`); a
crash path has at least one crash day, a calm path none.

Measured per programme, over all / calm / crash paths: the mean 1-year return, the cost of
carry (mean return given up against the unprotected index, per year), the maximum drawdown
of the daily marked-to-market value (mean and 95% quantile), the `alpha` ES of the 1-year
return (mean loss in the worst 1 - alpha), and the gap risk. Gap risk is measured per roll
period against the floor the puts guarantee: from a roll at t_k to the next (Delta years),
the put programme can lose at most S_k e^{r Delta} + P_k e^{r Delta} - (1 - put_spread) K_k
e^{-r tau} (K_k the strike, tau the put's time left at the next roll), since a put is worth at
least K e^{-r tau} - S; the loss beyond that floor is the gap loss (0 for the puts by
construction; what the dynamic replication loses through gaps).

Limits (choices the issue left open): the pricing model's parameters are fixed (a sticky-
moneyness surface): implied vols do not jump after a crash, which understates both the
crash-time value of the held puts and the cost of rolling afterwards; one put per unit held
(the protection does not resize with the wealth); the dynamic version uses Black-Scholes
deltas at the constant implied vol of the new put.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import DAYS_PER_YEAR, figure
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "tail-risk"
QUESTION = ("What does a rolling programme of out-of-the-money puts cost per year, and what "
            "does it save in drawdown and tail loss against replicating the same protection "
            "dynamically, in calm years and in crash years?")
BOUNDS = {"paths": AtLeast(200), "spot": Positive(), "days": AtLeast(1),
          "rate": Between(-0.2, 0.2), "drift": Between(-1.0, 1.0), "vol": Positive(),
          "jump_rate": NonNegative(), "jump_mean": Between(-2.0, 2.0),
          "jump_std": NonNegative(), "crash_threshold": Between(0.0, 1.0),
          "moneyness": Between(0.0, 1.5), "put_days": AtLeast(1), "roll_days": AtLeast(1),
          "jump_premium": NonNegative(), "heston_v0": Positive(),
          "heston_kappa": Positive(), "heston_theta": Positive(), "heston_xi": Positive(),
          "heston_rho": Between(-1.0, 1.0), "put_spread": Between(0.0, 0.5, closed=True),
          "cost_rate": Between(0.0, 0.1, closed=True), "rebalance_days": AtLeast(1),
          "alpha": Between(0.5, 1.0)}

# a roll period's loss beyond the floor below this fraction of spot is float rounding
# (float32 prices of ~100 carry ~1e-5 absolute error), not a gap
GAP_TOLERANCE = 1e-6

PROGRAMMES = ("unprotected", "put programme", "dynamic replication")
# unit-strike put table: log-moneyness log(S/K) in [lo, hi] (S/K from 0.14 to 2.7: a month's
# move from the roll date beyond it is beyond any crash), 4,001 points
TABLE_LOG_MONEYNESS = (-2.0, 1.0, 4001)


# ---------------------------------------------------------------------------------------
# Building blocks (pure functions of NumPy arrays; the tests check each one)
# ---------------------------------------------------------------------------------------


def roll_schedule(days: int, roll_days: int) -> np.ndarray:
    """Roll dates in days: 0, roll_days, 2 roll_days, ... strictly before `days`."""
    return np.arange(0, days, roll_days)


def daily_log_jumps(paths: np.ndarray, paths_without_jumps: np.ndarray, jump_rate: float,
                    mean_relative_jump: float, dt: float) -> np.ndarray:
    """Each day's total log jump, shape (n_paths, n_days): the daily log return of the Merton
    paths minus that of the same key's paths with jump_rate = 0 (same diffusion draws), plus
    the compensator jump_rate kbar dt that only the first has in its drift (0 on a day
    without a jump, up to float rounding)."""
    log_jump_world = np.diff(np.log(np.asarray(paths, np.float64)), axis=1)
    log_diffusion = np.diff(np.log(np.asarray(paths_without_jumps, np.float64)), axis=1)
    return log_jump_world - log_diffusion + jump_rate * mean_relative_jump * dt


def unit_put_table(pricing, taus: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """(log-moneyness grid x, prices (len(taus), len(x))): the pricing model's value of a put
    of strike 1 at spot e^x with `taus` years left (`hj.price`, vectorised over the grid);
    tau <= 0 gives the payoff. Scales to any strike: P(S, K, tau) = K P(S / K, 1, tau)."""
    import hedgejax as hj

    grid = np.linspace(*TABLE_LOG_MONEYNESS)
    spots = np.exp(grid)
    rows = []
    for tau in taus:
        if tau <= 0:
            rows.append(np.maximum(1.0 - spots, 0.0))
        else:
            model = _at_spot(pricing, 1.0)
            rows.append(np.asarray(hj.price(model, hj.EuropeanPut(1.0, float(tau)),
                                            spot=spots), np.float64))
    return grid, np.stack(rows)


def _at_spot(model, spot: float):
    import dataclasses

    return dataclasses.replace(model, spot=np.asarray(spot, dtype=np.asarray(model.spot).dtype))


def exact_put(pricing, strike: np.ndarray, tau: float, spot: np.ndarray) -> np.ndarray:
    """The pricing model's put value per path (`hj.price`, one call over all paths); tau <= 0
    gives the payoff max(strike - spot, 0)."""
    import hedgejax as hj

    strike = np.asarray(strike, np.float64)
    spot = np.asarray(spot, np.float64)
    if tau <= 0:
        return np.maximum(strike - spot, 0.0)
    return np.asarray(hj.price(pricing, hj.EuropeanPut(strike, float(tau)), spot=spot),
                      np.float64)


def put_programme(paths: np.ndarray, pricing, moneyness: float, put_days: int,
                  roll_days: int, rate: float, spread: float = 0.0) -> dict[str, np.ndarray]:
    """The index plus a rolling put programme, per path and day.

    At each roll date t_k (`roll_schedule`) the programme sells the put it holds at
    (1 - spread) x its model value and buys one put of strike `moneyness` x S(t_k) and
    `put_days` days to expiry at (1 + spread) x its model value; the cash account (starting
    at 0, earning `rate`) pays for it. The put held at the end is valued at its model value
    (no spread). Daily marks between trades come from `unit_put_table`.

    Args:
        paths: spot paths (n_paths, days + 1), daily (dt = 1/252 years).
        pricing: the model whose `hj.price` values the puts.

    Returns: dict of float64 arrays: "wealth" (n_paths, days + 1), the index plus cash plus
        the put's mark (before the day's trades; wealth[:, 0] = S_0); "premium" (n_paths,
        n_rolls), money paid per roll (spread included); "proceeds" (n_paths, n_rolls), money
        received for the old put at each roll (0 at t0) and "final_put" (n_paths,), the last
        put's value at the end; "strike" (n_paths, n_rolls); "unit_premium" (scalar, the put's
        price per unit of spot at a roll, no spread).
    """
    paths = np.asarray(paths, np.float64)
    n_paths, n_cols = paths.shape
    days = n_cols - 1
    dt = 1.0 / DAYS_PER_YEAR
    rolls = roll_schedule(days, roll_days)
    unit_premium = float(exact_put(pricing, moneyness, put_days * dt, 1.0))
    strikes = moneyness * paths[:, rolls]
    premium = (1.0 + spread) * unit_premium * paths[:, rolls]
    proceeds = np.zeros_like(premium)
    for k in range(1, len(rolls)):
        tau = (put_days - roll_days) * dt
        proceeds[:, k] = (1.0 - spread) * exact_put(pricing, strikes[:, k - 1], tau,
                                                    paths[:, rolls[k]])
    last = rolls[-1]
    final_put = exact_put(pricing, strikes[:, -1], (put_days - (days - last)) * dt,
                          paths[:, -1])

    # cash before the day's trades: every earlier roll's net flow, accrued at the rate
    flows = proceeds - premium                                     # (n_paths, n_rolls)
    t = np.arange(days + 1)
    accrual = np.exp(rate * dt * (t[None, :] - rolls[:, None]))     # (n_rolls, days + 1)
    before = rolls[:, None] < t[None, :]
    cash = flows @ np.where(before, accrual, 0.0)

    # marks of the held put (the one bought at the last roll strictly before t)
    taus_left = put_days - np.arange(1, roll_days + 1)              # days left, 1..roll after
    grid, table = unit_put_table(pricing, np.maximum(taus_left, 0) * dt, rate)
    marks = np.zeros((n_paths, days + 1))
    marks[:, 0] = unit_premium * paths[:, 0]
    for j in range(roll_days):                                      # days since the roll - 1
        cols = t[1:][(t[1:] - 1) % roll_days == j]
        k = (cols - 1) // roll_days
        strike = strikes[:, k]
        x = np.log(paths[:, cols] / strike)
        marks[:, cols] = strike * np.interp(x, grid, table[j])
    # exact values where the programme trades, and at the end
    for k in range(1, len(rolls)):
        marks[:, rolls[k]] = proceeds[:, k] / (1.0 - spread)
    marks[:, -1] = final_put
    wealth = paths + cash + marks
    # at t0 the put is bought with cash: the investor's money is S_0, less the spread paid
    wealth[:, 0] = paths[:, 0] - spread * unit_premium * paths[:, 0]
    return {"wealth": wealth, "premium": premium, "proceeds": proceeds,
            "final_put": final_put, "strike": strikes, "unit_premium": unit_premium}


def bs_put_delta(spot, strike, tau, vol: float, rate: float) -> np.ndarray:
    """Black-Scholes put delta N(d1) - 1 as a NumPy float64 array (N in jax's working
    precision), tau > 0 years."""
    from jax.scipy.special import ndtr  # scipy is only a test dependency

    sd = vol * np.sqrt(tau)
    d1 = (np.log(spot / strike) + (rate + 0.5 * vol * vol) * tau) / sd
    return np.asarray(ndtr(np.asarray(d1, dtype=float)), dtype=float) - 1.0


def dynamic_replication(paths: np.ndarray, implied: float, moneyness: float, put_days: int,
                        roll_days: int, rate: float, cost_rate: float = 0.0,
                        rebalance_days: int = 1) -> dict[str, np.ndarray]:
    """The index plus a synthetic put: hold n_t = 1 + Delta_put shares, self-financed.

    Delta_put is the Black-Scholes delta at vol `implied` of the put the put programme holds
    (strike `moneyness` x S at the last roll, `put_days` days from it), reset on rebalancing
    days (multiples of `rebalance_days`) and at every roll, held in between. Wealth starts at
    S_0 and follows W_{t+1} = W_t e^{r dt} + n_t (S_{t+1} - S_t e^{r dt}) - cost_t, with
    cost_t = cost_rate |n_t - n_{t-1}| S_t (n_{-1} = 1: the index is already held).

    Returns: dict of float64 arrays "wealth" (n_paths, days + 1), "shares" (n_paths, days),
        the position held over each day, and "cost" (n_paths,), the costs accrued to the end.
    """
    paths = np.asarray(paths, np.float64)
    days = paths.shape[1] - 1
    dt = 1.0 / DAYS_PER_YEAR
    t = np.arange(days)
    last_roll = (t // roll_days) * roll_days
    strike = moneyness * paths[:, last_roll]
    tau = (put_days - (t - last_roll)) * dt
    rebalance = (t % rebalance_days == 0) | (t == last_roll)
    target = 1.0 + bs_put_delta(paths[:, :-1], strike, np.maximum(tau, 1e-12)[None, :],
                                implied, rate)
    # position held: the target of the last rebalancing day at or before t
    last_rebalance = np.maximum.accumulate(np.where(rebalance, t, 0))
    shares = target[:, last_rebalance]
    previous = np.concatenate([np.ones((paths.shape[0], 1)), shares[:, :-1]], axis=1)
    cost = cost_rate * np.abs(shares - previous) * paths[:, :-1]
    growth = math.exp(rate * dt)
    gain = shares * (paths[:, 1:] - paths[:, :-1] * growth) - cost
    # W_t e^{-r t dt} = S_0 + sum_{s < t} gain_s e^{-r (s + 1) dt}
    discount = np.exp(-rate * dt * (t + 1))
    wealth = np.empty_like(paths)
    wealth[:, 0] = paths[:, 0]
    wealth[:, 1:] = (paths[:, :1] + np.cumsum(gain * discount, axis=1)) / discount
    total_cost = np.sum(cost * np.exp(rate * dt * (days - t)), axis=1)
    return {"wealth": wealth, "shares": shares, "cost": total_cost}


def max_drawdown(wealth: np.ndarray) -> np.ndarray:
    """Largest fall from a running peak, per path: max_t (1 - W_t / max_{s<=t} W_s)."""
    peak = np.maximum.accumulate(wealth, axis=1)
    return np.max(1.0 - wealth / peak, axis=1)


def expected_shortfall(returns: np.ndarray, alpha: float) -> float:
    """Mean loss (-return) over the worst ceil((1 - alpha) n) outcomes (a positive loss)."""
    losses = np.sort(-np.asarray(returns, np.float64))[::-1]
    # the tolerance keeps (1 - 0.95) x 100 = 5.000000000000004 at 5 outcomes
    k = max(1, math.ceil((1.0 - alpha) * losses.size - 1e-9))
    return float(np.mean(losses[:k]))


def period_gap_losses(wealth: np.ndarray, paths: np.ndarray, premium_mid: np.ndarray,
                      strikes: np.ndarray, rolls: np.ndarray, put_days: int, rate: float,
                      spread: float) -> np.ndarray:
    """Per path and roll period, the loss beyond the put programme's floor, as a fraction of
    the spot at the roll (>= 0). The loss over [t_k, t_{k+1}] is W_k e^{r Delta} - W_{k+1}
    (W_k the wealth after the roll's trades, marked at mid); the floor is S_k e^{r Delta} +
    P_k e^{r Delta} - (1 - spread) K_k e^{-r tau} (module docstring): what holding the index
    and the put can lose at most. Excesses up to GAP_TOLERANCE (the rounding of float32
    prices) count as 0."""
    dt = 1.0 / DAYS_PER_YEAR
    ends = np.append(rolls[1:], paths.shape[1] - 1)
    out = np.zeros((paths.shape[0], len(rolls)))
    for k, (start, end) in enumerate(zip(rolls, ends, strict=True)):
        growth = math.exp(rate * dt * (end - start))
        tau = (put_days - (end - start)) * dt
        floor = ((paths[:, start] + premium_mid[:, k]) * growth
                 - (1.0 - spread) * strikes[:, k] * math.exp(-rate * max(tau, 0.0)))
        loss = wealth[:, start] * growth - wealth[:, end]
        excess = (loss - floor) / paths[:, start]
        out[:, k] = np.where(excess > GAP_TOLERANCE, excess, 0.0)
    return out


# ---------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------


def _models(cfg: dict[str, Any]):
    import hedgejax as hj

    world = hj.Merton(cfg["spot"], cfg["vol"], cfg["jump_rate"], cfg["jump_mean"],
                      cfg["jump_std"], cfg["rate"], drift=cfg["drift"])
    calm_world = hj.Merton(cfg["spot"], cfg["vol"], 0.0, cfg["jump_mean"], cfg["jump_std"],
                           cfg["rate"], drift=cfg["drift"])
    if cfg["pricing"] == "merton":
        pricing = hj.Merton(cfg["spot"], cfg["vol"], cfg["jump_rate"] * cfg["jump_premium"],
                            cfg["jump_mean"], cfg["jump_std"], cfg["rate"])
        described = (f"Merton at {cfg['jump_premium']:g}x the world's jump intensity "
                     f"({cfg['jump_rate'] * cfg['jump_premium']:g} jumps a year)")
    elif cfg["pricing"] == "heston":
        pricing = hj.Heston(cfg["spot"], cfg["heston_v0"], cfg["heston_kappa"],
                            cfg["heston_theta"], cfg["heston_xi"], cfg["heston_rho"],
                            cfg["rate"])
        described = (f"Heston (v0 {cfg['heston_v0']:g}, theta {cfg['heston_theta']:g}, "
                     f"xi {cfg['heston_xi']:g}, rho {cfg['heston_rho']:g})")
    else:
        raise ValueError(f"config key 'pricing' must be merton or heston, got "
                         f"{cfg['pricing']!r}")
    return world, calm_world, pricing, described


def _stats(label: str, subset: str, ret: np.ndarray, base: np.ndarray, dd: np.ndarray,
           gap: np.ndarray, years: float, alpha: float) -> dict[str, Any]:
    n = ret.size
    if n == 0:
        return {"programme": label, "paths": subset, "n_paths": 0}
    carry = (base - ret) / years
    return {
        "programme": label, "paths": subset, "n_paths": int(n),
        "mean_return": 100 * float(np.mean(ret)),
        "carry": 100 * float(np.mean(carry)),
        "carry_stderr": 100 * float(np.std(carry, ddof=1) / math.sqrt(n)) if n > 1 else None,
        "mean_max_drawdown": 100 * float(np.mean(dd)),
        "p95_max_drawdown": 100 * float(np.percentile(dd, 95)),
        f"es_{alpha:g}": 100 * expected_shortfall(ret, alpha),
        "worst_return": 100 * float(np.min(ret)),
        "p_floor_breach": float(np.mean(np.max(gap, axis=1) > 0)),
        "mean_gap_loss": 100 * float(np.mean(np.sum(gap, axis=1))),
        "worst_gap_loss": 100 * float(np.max(gap)),
    }


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax

    import hedgejax as hj

    days, roll_days, put_days = cfg["days"], cfg["roll_days"], cfg["put_days"]
    if put_days < roll_days:
        raise ValueError(f"config key 'put_days' must be at least roll_days ({roll_days}) so "
                         f"that a put is still held at the next roll, got {put_days}")
    if roll_days > days:
        raise ValueError(f"config key 'roll_days' must be at most days ({days}), got "
                         f"{roll_days}")
    world, calm_world, pricing, pricing_text = _models(cfg)
    rate, alpha, n = cfg["rate"], cfg["alpha"], cfg["paths"]
    dt = 1.0 / DAYS_PER_YEAR
    years = days * dt
    grid = hj.TimeGrid(years, days)

    steps = ctx.track(range(2), "simulating", total=2)
    next(steps)
    paths = np.asarray(hj.simulate(world, grid, n, ctx.key), np.float64)
    next(steps, None)
    diffusion = np.asarray(hj.simulate(calm_world, grid, n, ctx.key), np.float64)
    kbar = float(jax.numpy.expm1(cfg["jump_mean"] + 0.5 * cfg["jump_std"] ** 2))
    jumps = daily_log_jumps(paths, diffusion, cfg["jump_rate"], kbar, dt)
    crash_days = jumps <= math.log(1.0 - cfg["crash_threshold"])
    crash = np.any(crash_days, axis=1)

    puts = put_programme(paths, pricing, cfg["moneyness"], put_days, roll_days, rate,
                         cfg["put_spread"])
    unit_premium = puts["unit_premium"]
    implied = float(hj.implied_vol(unit_premium, hj.EuropeanPut(cfg["moneyness"],
                                                                put_days * dt),
                                   1.0, rate=rate))
    dynamic = dynamic_replication(paths, implied, cfg["moneyness"], put_days, roll_days,
                                  rate, cfg["cost_rate"], cfg["rebalance_days"])
    rolls = roll_schedule(days, roll_days)
    premium_mid = unit_premium * paths[:, rolls]
    wealth = {"unprotected": paths, "put programme": puts["wealth"],
              "dynamic replication": dynamic["wealth"]}
    gaps = {}
    for label in PROGRAMMES:
        w = wealth[label]
        if label == "put programme":
            w = _post_trade(puts, paths, rolls, cfg["put_spread"])
        gaps[label] = period_gap_losses(w, paths, premium_mid, puts["strike"], rolls,
                                        put_days, rate, cfg["put_spread"])
    s0 = paths[:, :1]
    returns = {k: w[:, -1] / s0[:, 0] - 1.0 for k, w in wealth.items()}
    drawdowns = {k: max_drawdown(w) for k, w in wealth.items()}
    base = returns["unprotected"]

    table = []
    subsets = {"all": np.ones(n, bool), "calm": ~crash, "crash": crash}
    for label in PROGRAMMES:
        for subset, mask in subsets.items():
            table.append(_stats(label, subset, returns[label][mask], base[mask],
                                drawdowns[label][mask], gaps[label][mask], years, alpha))
    rows = {(r["programme"], r["paths"]): r for r in table}

    # the loss on crash days themselves, per programme (% of the day's starting wealth)
    day_loss = {k: (1.0 - w[:, 1:] / w[:, :-1])[crash_days] * 100 for k, w in wealth.items()}
    n_crash_days = int(np.sum(crash_days))
    crash_day_loss = {k: float(np.mean(v)) if v.size else None for k, v in day_loss.items()}

    es_key = f"es_{alpha:g}"
    u_all, p_all, d_all = (rows[(p, "all")] for p in PROGRAMMES)
    u_cr, p_cr, d_cr = (rows[(p, "crash")] for p in PROGRAMMES)
    u_ca, p_ca, d_ca = (rows[(p, "calm")] for p in PROGRAMMES)
    premium_per_year = 100 * float(np.mean(np.sum(puts["premium"], axis=1))) / paths[0, 0] / years
    net_per_year = 100 * float(np.mean(np.sum(puts["premium"] - puts["proceeds"], axis=1)
                                       - puts["final_put"])) / paths[0, 0] / years
    findings = [
        f"World: Merton, diffusion vol {cfg['vol']:.0%}, {cfg['jump_rate']:g} jumps a year "
        f"of log size N({cfg['jump_mean']:g}, {cfg['jump_std']:g}^2), drift {cfg['drift']:.0%}"
        f", rate {rate:.0%}. {crash.mean():.1%} of the {n:,} one-year paths have a crash day "
        f"(a jump of {cfg['crash_threshold']:.0%} or more down). The {put_days}-day put "
        f"{1 - cfg['moneyness']:.0%} out of the money costs {100 * unit_premium:.3f}% of spot "
        f"under {pricing_text}, Black-Scholes implied vol {implied:.1%}; rolled every "
        f"{roll_days} days that is {premium_per_year:.2f}% of the portfolio a year in gross "
        f"premia, of which all but {net_per_year:.2f}% a year comes back from selling the "
        f"old puts (and the last one's value).",
        f"Cost of carry (mean return given up against the index, per year): put programme "
        f"{p_all['carry']:.2f}% +/- {p_all['carry_stderr']:.2f}%, dynamic replication "
        f"{d_all['carry']:.2f}% +/- {d_all['carry_stderr']:.2f}%. In calm years the puts "
        f"cost {p_ca['carry']:.2f}% and the replication {d_ca['carry']:.2f}%; in crash "
        f"years the puts earn {-p_cr['carry']:.2f}% back and the replication "
        f"{-d_cr['carry']:.2f}%.",
        f"Crash years: {alpha:.0%} ES of the 1-year return {u_cr[es_key]:.1f}% unprotected, "
        f"{p_cr[es_key]:.1f}% with puts, {d_cr[es_key]:.1f}% replicated; mean max drawdown "
        f"{u_cr['mean_max_drawdown']:.1f}% / {p_cr['mean_max_drawdown']:.1f}% / "
        f"{d_cr['mean_max_drawdown']:.1f}% (95% quantile {u_cr['p95_max_drawdown']:.1f}% / "
        f"{p_cr['p95_max_drawdown']:.1f}% / {d_cr['p95_max_drawdown']:.1f}%). Calm years: "
        f"ES {u_ca[es_key]:.1f}% / {p_ca[es_key]:.1f}% / {d_ca[es_key]:.1f}%.",
        f"Gap risk: on the {n_crash_days:,} crash days the index lost "
        f"{crash_day_loss['unprotected']:.1f}% on average, the put programme "
        f"{crash_day_loss['put programme']:.1f}% (marked at model value) and the dynamic "
        f"replication {crash_day_loss['dynamic replication']:.1f}%: its delta is set before "
        f"the gap. {d_cr['p_floor_breach']:.1%} of crash paths break through the puts' "
        f"monthly floor (worst excess {d_cr['worst_gap_loss']:.1f}% of spot; mean "
        f"{d_cr['mean_gap_loss']:.2f}% a path); the put programme never does "
        f"({p_all['p_floor_breach']:.0%} of paths).",
    ]

    fig = _figure(cfg, paths, wealth, returns, crash, rolls, n, alpha)
    return Outcome(
        table=table, findings=findings,
        title="tail-risk hedging: rolling puts against dynamic replication",
        caption=(f"One index unit (spot {cfg['spot']:g}) held {days} trading days; puts "
                 f"{cfg['moneyness']:g} x spot, {put_days} days, rolled every {roll_days} "
                 f"days, priced by {pricing_text}; the replication trades daily at "
                 f"{cfg['cost_rate']:.2%} cost. All figures in % of the initial value; carry "
                 f"= mean return given up vs the index, per year (> 0 a cost); ES, drawdowns "
                 f"and gap losses are positive losses; crash paths have a day with a jump of "
                 f"{cfg['crash_threshold']:.0%} or more down."),
        headers={"programme": "programme", "paths": "paths", "n_paths": "number of paths",
                 "mean_return": "mean 1y return (%)", "carry": "carry (%/yr)",
                 "carry_stderr": "carry std error (%/yr)",
                 "mean_max_drawdown": "mean max drawdown (%)",
                 "p95_max_drawdown": "95% max drawdown (%)",
                 es_key: f"{alpha:.0%} ES 1y (%)", "worst_return": "worst 1y return (%)",
                 "p_floor_breach": "P(breach floor)",
                 "mean_gap_loss": "mean gap loss (%)",
                 "worst_gap_loss": "worst gap loss (% of spot)"},
        display=["programme", "paths", "carry", "mean_max_drawdown", "p95_max_drawdown",
                 es_key, "p_floor_breach"],
        results={"unit_premium": unit_premium, "implied_vol": implied,
                 "premium_per_year_pct": premium_per_year,
                 "net_option_spend_per_year_pct": net_per_year,
                 "crash_path_fraction": float(crash.mean()), "n_crash_days": n_crash_days,
                 "crash_day_loss_pct": crash_day_loss,
                 "mean_replication_cost_pct": 100 * float(np.mean(dynamic["cost"]))
                 / float(paths[0, 0]),
                 "pricing": pricing_text},
        figures={"tail_risk": fig})


def _post_trade(puts: dict[str, np.ndarray], paths: np.ndarray, rolls: np.ndarray,
                spread: float) -> np.ndarray:
    """The put programme's wealth with each roll date's value taken after its trades (the new
    put marked at mid): the start of the next roll period. Before the trades the programme
    holds the old put worth proceeds / (1 - spread); after, the new one worth the premium /
    (1 + spread), its cash lower by the premium and higher by the proceeds."""
    wealth = puts["wealth"].copy()
    for k, day in enumerate(rolls):
        if k == 0:
            wealth[:, 0] = paths[:, 0] - spread * puts["premium"][:, 0] / (1 + spread)
            continue
        old = puts["proceeds"][:, k]
        new = puts["premium"][:, k]
        wealth[:, day] += old - old / (1 - spread) - new + new / (1 + spread)
    return wealth


def _figure(cfg, paths, wealth, returns, crash, rolls, n, alpha):
    fig, ax = figure(ncols=2, size=(12.0, 4.8))
    fig.suptitle(f"Index with rolling {cfg['moneyness']:g}-strike puts vs dynamic "
                 f"replication: {n:,} one-year Merton paths", fontsize=11)
    # left: roll-period return of each programme against the index's (the payoff profile)
    ends = np.append(rolls[1:], paths.shape[1] - 1)
    idx = (paths[:, ends] / paths[:, rolls] - 1) * 100
    crash_path = np.repeat(crash[:, None], len(rolls), axis=1)
    take = np.random.default_rng(0).random(idx.shape) < min(1.0, 6000 / idx.size)
    take |= crash_path & (idx < -8)
    for label, colour in (("put programme", "C1"), ("dynamic replication", "C2")):
        w = wealth[label]
        ret = (w[:, ends] / w[:, rolls] - 1) * 100
        ax[0, 0].scatter(idx[take], ret[take], s=3, alpha=0.35, color=colour, label=label,
                         rasterized=True)
    lo = float(np.min(idx[take]))
    ax[0, 0].plot([lo, float(np.max(idx[take]))], [lo, float(np.max(idx[take]))], "k:",
                  linewidth=0.8, label="unprotected (index)")
    ax[0, 0].axhline(-100 * (1 - cfg["moneyness"]), color="C3", linewidth=0.8,
                     linestyle="--", label=f"put strike ({cfg['moneyness'] - 1:.0%} from the roll)")
    ax[0, 0].set_xlabel(f"index return over a {cfg['roll_days']}-day roll period (%)")
    ax[0, 0].set_ylabel("programme return over the period (%)")
    ax[0, 0].set_title("payoff profile per roll period (crash periods all shown)",
                       fontsize=10)
    ax[0, 0].legend(fontsize=7, markerscale=3)
    # right: 1-year loss exceedance in crash paths
    for label, colour in zip(PROGRAMMES, ("k", "C1", "C2"), strict=True):
        losses = np.sort(-returns[label][crash] * 100)[::-1]
        if losses.size == 0:
            continue
        prob = np.arange(1, losses.size + 1) / losses.size
        ax[0, 1].step(losses, prob, where="post", color=colour, label=label)
    ax[0, 1].set_yscale("log")
    ax[0, 1].set_xlim(left=0.0)
    ax[0, 1].axhline(1 - alpha, color="grey", linewidth=0.6, linestyle=":",
                     label=f"{1 - alpha:.0%} (ES level)")
    ax[0, 1].set_xlabel("1-year loss x (% of initial value, = -return)")
    ax[0, 1].set_ylabel("P(loss > x | crash path), log scale")
    ax[0, 1].set_title(f"crash paths ({crash.sum():,} of {n:,}): loss exceedance",
                       fontsize=10)
    ax[0, 1].legend(fontsize=7)
    return fig
