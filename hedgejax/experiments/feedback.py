"""feedback: when hedgers move the price, how much do they add to (or take from) volatility,
skew and crashes?

Setup. The fundamental value follows Black-Scholes at vol `vol` (risk-neutral drift). A
population of hedgers holds puts (strike `strike`, maturity `option_maturity`) on a fraction
`share` of the shares outstanding and delta-hedges them at every daily grid time; their net
share demand moves the log price by `impact` per unit of the float (`hj.Feedback`: the
market-clearing price log S = log F + impact (h(t, S) - h(0, S0)), solved in every step of the
simulation; Frey and Stremme 1997, Platen and Schweizer 1998, Sircar and Papanicolaou 1998).

- Portfolio insurers synthesise protective puts: they delta-hedge a SHORT put position
  (quantity -share), so they sell as the price falls (short gamma): they amplify.
- Market makers long the same puts (quantity +share) buy as the price falls (long gamma):
  they dampen.

For each share, `paths` daily paths over `horizon` years give the realised vol (sqrt of the
mean squared daily log return per year, pooled over paths and days, with its standard error
over paths), the skewness of the log return over the horizon, and the crash depth: the 1%
quantile of the return over the horizon (as a loss, %). The first-order theory is the effective vol
vol / (1 - impact S dh/dS) = vol / (1 + impact S Gamma_book) at t0 (`Feedback.effective_vol`).

1987-style scenario: the fundamental is Merton with rare large down-jumps (`jump_rate` a year,
log size N(`jump_mean`, `jump_std`^2)), with and without portfolio insurers at
`crash_share`. On the paths whose fundamental jumps (the same draws: the base world's paths
are recomputed exactly), the observed return on the jump day against the fundamental's
measures the crash amplification.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import DAYS_PER_YEAR, daily_grid, figure
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "feedback"
QUESTION = ("When delta hedgers' trades move the price, how much do portfolio insurers (short "
            "gamma) amplify volatility, skew and crashes, and long-gamma market makers dampen "
            "them, and does the Frey-Stremme effective vol predict it?")
BOUNDS = {"paths": AtLeast(100), "spot": Positive(), "vol": Positive(),
          "horizon": Between(1 / DAYS_PER_YEAR, 5.0, closed=True),
          "strike": Positive(), "option_maturity": Positive(), "impact": NonNegative(),
          "shares": NonNegative(), "crash_share": NonNegative(),
          "jump_rate": NonNegative(), "jump_mean": Between(-1.0, 0.0),
          "jump_std": NonNegative()}


def _stats(paths: np.ndarray, dt: float) -> dict[str, float]:
    """Realised vol (annual) with its SE over paths, skewness of the horizon log return and
    its 1% loss."""
    returns = np.diff(np.log(paths), axis=1)
    per_path = np.mean(returns ** 2, axis=1) / dt       # each path's realised variance
    variance = float(np.mean(per_path))
    var_se = float(np.std(per_path, ddof=1) / math.sqrt(len(per_path)))
    vol = math.sqrt(variance)
    total = np.log(paths[:, -1] / paths[:, 0])
    centred = total - total.mean()
    skew = float(np.mean(centred ** 3) / np.mean(centred ** 2) ** 1.5)
    horizon_return = np.expm1(total)
    return {"realised_vol": vol, "vol_stderr": var_se / (2.0 * vol), "skew": skew,
            "crash_1pct": -float(np.quantile(horizon_return, 0.01))}


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import hedgejax as hj

    if cfg["horizon"] >= cfg["option_maturity"]:
        raise ValueError(f"config key 'horizon' must be below option_maturity "
                         f"({cfg['option_maturity']:g}), got {cfg['horizon']:g}")
    shares = [float(s) for s in cfg["shares"]]
    grid = daily_grid(cfg["horizon"])
    dt, n = grid.dt, cfg["paths"]
    spot, vol, rho = cfg["spot"], cfg["vol"], cfg["impact"]
    put = hj.EuropeanPut(cfg["strike"], cfg["option_maturity"])
    base = hj.BlackScholes(spot, vol)

    table, curves = [], {"short gamma": [], "long gamma": []}
    runs = [("none", 0.0)] + [(side, s) for s in shares if s > 0
                              for side in ("short gamma", "long gamma")]
    for side, share in ctx.track(runs, "simulating"):
        qty = -share if side == "short gamma" else share
        world = hj.Feedback(base, hj.Book([put], quantities=[qty]), impact=rho)
        level = float(world.illiquidity())
        theory = vol / (1.0 - level) if level < 1.0 else None
        paths = np.asarray(hj.simulate(world, grid, n, ctx.key), dtype=float)
        row = {"hedgers": ("portfolio insurers" if side == "short gamma" else
                           "market makers" if side == "long gamma" else "no hedgers"),
               "share": share, "illiquidity": level, "theory_vol": theory,
               **_stats(paths, dt), "crash_day_return": None, "fundamental_jump": None}
        table.append(row)
        for key in (("short gamma", "long gamma") if side == "none" else (side,)):
            curves[key].append(row)

    # 1987-style: the fundamental jumps; portfolio insurers at crash_share, or none
    jumpy = hj.Merton(spot, vol, cfg["jump_rate"], cfg["jump_mean"], cfg["jump_std"])
    fundamental = np.asarray(hj.simulate(jumpy, grid, n, ctx.key), dtype=float)
    f_returns = np.diff(np.log(fundamental), axis=1)
    jump_day = np.argmin(f_returns, axis=1)
    crashed = f_returns[np.arange(n), jump_day] < cfg["jump_mean"] / 2
    crash = {}
    for share in (0.0, cfg["crash_share"]):
        world = hj.Feedback(jumpy, hj.Book([put], quantities=[-share]), impact=rho)
        paths = np.asarray(hj.simulate(world, grid, n, ctx.key), dtype=float)
        returns = np.diff(np.log(paths), axis=1)
        day = returns[np.arange(n), jump_day][crashed]
        fund = f_returns[np.arange(n), jump_day][crashed]
        crash[share] = {"observed": float(np.expm1(np.mean(day))),
                        "fundamental": float(np.expm1(np.mean(fund))),
                        "paths": paths}
        table.append({"hedgers": ("1987: jumps, no insurers" if share == 0 else
                                  "1987: jumps + insurers"),
                      "share": share, "illiquidity": float(world.illiquidity()),
                      "theory_vol": None, **_stats(paths, dt),
                      "crash_day_return": -crash[share]["observed"],
                      "fundamental_jump": -crash[share]["fundamental"]})
    n_crashed = int(np.sum(crashed))
    rows = {(r["hedgers"], r["share"]): r for r in table}
    top = max(shares)
    calm = rows[("no hedgers", 0.0)]
    amp = rows[("portfolio insurers", top)]
    damp = rows[("market makers", top)]
    c0, c1 = crash[0.0], crash[cfg["crash_share"]]
    findings = [
        f"Without hedgers the realised vol is {calm['realised_vol']:.2%} (base vol "
        f"{vol:.0%}); skew of the horizon log return {calm['skew']:+.3f}; the 1% worst "
        f"{cfg['horizon']:g}-year "
        f"return loses {calm['crash_1pct']:.1%}.",
        f"Portfolio insurers hedging puts on {top:.0%} of the float (impact {rho:g}: "
        f"rho S Gamma = {amp['illiquidity']:.3f}) raise the realised vol to "
        f"{amp['realised_vol']:.2%} +/- {amp['vol_stderr']:.2%} (Frey-Stremme first-order "
        f"theory {_pct(amp['theory_vol'])}), its skew to {amp['skew']:+.3f} and the 1% "
        f"crash depth to {amp['crash_1pct']:.1%}.",
        f"Market makers long the same puts dampen: realised vol {damp['realised_vol']:.2%} "
        f"+/- {damp['vol_stderr']:.2%} (theory {_pct(damp['theory_vol'])}), skew "
        f"{damp['skew']:+.3f}, 1% crash depth {damp['crash_1pct']:.1%}.",
        f"1987-style: on the {n_crashed:,} of {n:,} paths whose fundamental jumps (mean jump "
        f"day {-c0['fundamental']:.1%}), the price falls {-c0['observed']:.1%} that day "
        f"without insurers and {-c1['observed']:.1%} with insurers on "
        f"{cfg['crash_share']:.0%} of the float: the crash is amplified "
        f"{c1['observed'] / c0['observed']:.2f}x.",
    ]

    fig, ax = figure(ncols=2, size=(12.0, 4.6))
    fig.suptitle(f"Feedback from delta hedgers: puts K={cfg['strike']:g}, "
                 f"T={cfg['option_maturity']:g}y, impact {rho:g}; base vol {vol:.0%}, "
                 f"{grid.n_steps} days, {n:,} paths", fontsize=11)
    colours = {"short gamma": "C3", "long gamma": "C0"}
    names = {"short gamma": "portfolio insurers (short gamma)",
             "long gamma": "market makers (long gamma)"}
    for side, rows_ in curves.items():
        x = [100 * r["share"] for r in rows_]
        y = [100 * r["realised_vol"] for r in rows_]
        err = [200 * r["vol_stderr"] for r in rows_]
        ax[0, 0].errorbar(x, y, yerr=err, fmt="o-", color=colours[side], capsize=3,
                          label=f"{names[side]}: simulated")
        th = [(100 * r["share"], 100 * r["theory_vol"]) for r in rows_
              if r["theory_vol"] is not None]
        ax[0, 0].plot(*zip(*th, strict=True), "--", color=colours[side],
                      label=f"{names[side]}: vol / (1 - rho S dh/dS)")
        ax[0, 1].plot(x, [100 * r["crash_1pct"] for r in rows_], "o-", color=colours[side],
                      label=names[side])
    ax[0, 0].axhline(100 * vol, color="k", linewidth=0.6, linestyle=":",
                     label=f"base vol {vol:.0%}")
    ax[0, 0].set_xlabel("hedgers' put position (% of shares outstanding)")
    ax[0, 0].set_ylabel("realised vol (% per year; bars: 2 std errors)")
    ax[0, 0].set_title("realised volatility vs hedger share", fontsize=10)
    ax[0, 0].legend(fontsize=7)
    ax[0, 1].set_xlabel("hedgers' put position (% of shares outstanding)")
    ax[0, 1].set_ylabel(f"crash depth: 1% worst {grid.n_steps}-day loss (%)")
    ax[0, 1].set_title("crash depth vs hedger share", fontsize=10)
    ax[0, 1].legend(fontsize=7)

    return Outcome(
        table=table, findings=findings,
        title="feedback of delta hedgers on volatility, skew and crashes",
        caption=(f"Hedgers delta-hedge puts (strike {cfg['strike']:g}, {cfg['option_maturity']:g}"
                 f" years) on a share of the float; impact {rho:g} in log price per unit of "
                 f"the float; base Black-Scholes vol {vol:.0%} (Merton jumps in the 1987 rows); "
                 f"{grid.n_steps} daily steps, {n:,} paths. Vols annual; crash depth = loss of "
                 "the 1% worst horizon return; jump-day loss = mean fall of the price on the "
                 "day of the largest fundamental fall, in the paths where it is a jump."),
        headers={"hedgers": "hedgers", "share": "share of float",
                 "illiquidity": "rho S dh/dS at t0", "theory_vol": "theory vol at t0",
                 "realised_vol": "realised vol", "vol_stderr": "vol std error",
                 "skew": "horizon skew", "crash_1pct": "1% crash depth",
                 "crash_day_return": "jump-day loss",
                 "fundamental_jump": "fundamental jump-day loss"},
        display=["hedgers", "share", "theory_vol", "realised_vol", "skew", "crash_1pct",
                 "crash_day_return"],
        results={"n_steps": grid.n_steps, "crashed_paths": n_crashed,
                 "crash_amplification": c1["observed"] / c0["observed"]},
        figures={"feedback_vol": fig})


def _pct(x: float | None) -> str:
    return "undefined (past the illiquidity threshold)" if x is None else f"{x:.2%}"
