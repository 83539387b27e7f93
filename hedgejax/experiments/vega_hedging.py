"""vega-hedging: in a stochastic-volatility world, what shares cannot hedge and a listed
option can.

The world is Heston (defaults: the Heston world of workload W4 in docs/architecture.md,
v0 = theta = 0.04, kappa = 1.5, xi = 0.5, rho = -0.7; its Feller condition fails, so the
variance can touch zero, which the model allows: the `FellerWarning` is expected and
silenced here). The user holds `contracts` short-dated calls (strike `strike`, maturity
`maturity`) and hedges them to expiry over `steps` rebalances, with a Heston hedge model
conditioned on each path's current variance (the hedger observes it; `hedge_model=None`,
the default). Conventions of docs/architecture.md ("Conventions"): the book is bought at its
Heston price V0, positions are in shares (delta-neutral = -delta) and in units of the listed
option, P&L is in time-T money, > 0 a gain to the holder.

Strategies, all rebalanced at every step:

- unhedged: the book alone (its P&L on the delta-hedge run's paths);
- delta: `DeltaHedge()`, -delta shares. It removes the spot risk but leaves the variance
  risk: the book's value moves with v, and shares cannot offset that;
- delta-vega: `DeltaVegaHedge(listed call)`: -vega_book / vega_listed units of a longer-dated
  listed call (vega = dV/dv under the hedge model), then delta-neutral with shares;
- delta-gamma: `DeltaGammaHedge(listed call)`: gamma-neutral with the listed call instead.
  Under Heston this trades the book's gamma for a vega exposure of the opposite sign:
  near its expiry the short-dated call has much more gamma per unit of vega than the
  longer-dated one, so matching gamma over-buys vega. The t0 Greeks in the results show it.

The listed call trades at the world's (Heston) price and pays `listed_half_spread` per unit
traded (`Spread`); shares pay `share_cost_rate` of the traded value (`Proportional`). Each
row gives the P&L after costs and the frictionless residual (`hedge_error`: the same trades
without their costs). Reference: with the true model as hedge model and no costs, every
strategy's mean P&L is 0 (V0 is the risk-neutral price and hedge gains have zero mean), so
the frictionless means are compared with 0 in standard errors; the mean cost is what the
risk reduction costs.

Run time: the Heston hedge model's values and Greeks come from price surfaces
(`hedge(..., pricing="auto")`: per grid step a Chebyshev interpolant built once per run from
the exact Fourier pricer, module `hedgejax._surface`), not from a Fourier integral per path
and per step, so the default is 65,536 paths x 63 steps (a rebalance about every trading
day) in well under a minute on a 2-core CPU; most of it is compiling the four loops.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._common import figure, histograms, plural, stats_row, unhedged_result
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "vega-hedging"
QUESTION = ("In a stochastic-volatility (Heston) world, how much of a short-dated option's "
            "risk is left after delta hedging, and how much does adding a listed option "
            "(delta-vega, delta-gamma) remove, at what cost?")
# paths >= 100: the findings compare stds with the unhedged one, which is 0 when every path
# ends out of the money (likely with a handful of paths)
BOUNDS = {"paths": AtLeast(100), "contracts": Positive(), "spot": Positive(),
          "strike": Positive(), "maturity": Positive(), "rate": Between(-1.0, 1.0),
          "steps": AtLeast(1),
          "v0": NonNegative(), "kappa": Positive(), "theta": NonNegative(), "xi": Positive(),
          "rho": Between(-1.0, 1.0, closed=True), "listed_strike": Positive(),
          "listed_maturity": Positive(), "listed_half_spread": NonNegative(),
          "share_cost_rate": NonNegative()}

OPTION_HEDGES = ("delta-vega", "delta-gamma")


def _row(label: str, res) -> dict[str, Any]:
    import hedgejax as hj

    err = np.asarray(res.hedge_error, dtype=np.float64)
    row = stats_row(label, res)
    se = float(np.std(err, ddof=1) / np.sqrt(err.size))
    row["mean_frictionless"] = float(np.mean(err))
    row["z_frictionless_vs_0"] = row["mean_frictionless"] / se if se > 0 else 0.0
    row["std_frictionless"] = float(np.std(err, ddof=1))
    row["es_frictionless_0.99"] = float(hj.risk.expected_shortfall(res.hedge_error, 0.99))
    return row


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax

    import hedgejax as hj

    unknown = [h for h in cfg["option_hedges"] if h not in OPTION_HEDGES]
    if unknown:
        raise ValueError(f"config key 'option_hedges' must list names from "
                         f"{', '.join(OPTION_HEDGES)}, got {unknown[0]!r}")
    if len(set(cfg["option_hedges"])) != len(cfg["option_hedges"]):
        raise ValueError("config key 'option_hedges' lists a name twice")
    if cfg["listed_maturity"] < cfg["maturity"]:
        raise ValueError(f"config key 'listed_maturity' must be at least maturity = "
                         f"{cfg['maturity']:g} (the listed option must outlive the hedge), "
                         f"got {cfg['listed_maturity']:g}")

    with warnings.catch_warnings():
        # The W4 parameters fail Feller on purpose (variance touches zero); that is allowed.
        warnings.simplefilter("ignore", hj.FellerWarning)
        world = hj.Heston(spot=cfg["spot"], v0=cfg["v0"], kappa=cfg["kappa"],
                          theta=cfg["theta"], xi=cfg["xi"], rho=cfg["rho"], rate=cfg["rate"])
    feller = 2 * cfg["kappa"] * cfg["theta"] >= cfg["xi"] ** 2
    # float32-representable, so the option's (float32) expiry falls exactly on the grid's end
    maturity = float(np.float32(cfg["maturity"]))
    call = hj.EuropeanCall(cfg["strike"], maturity)
    book = hj.Book([call], quantities=[cfg["contracts"]])
    listed = hj.EuropeanCall(cfg["listed_strike"], cfg["listed_maturity"])
    grid = hj.TimeGrid(maturity, cfg["steps"])
    costs = hj.Proportional(cfg["share_cost_rate"])
    listed_costs = hj.Spread(cfg["listed_half_spread"])
    key, n = jax.random.fold_in(ctx.key, 1), cfg["paths"]

    # t0 Greeks (dV/dv for vega): what each option hedge holds at the start.
    both = hj.greeks(world, hj.Book([call, listed], quantities=[cfg["contracts"], 1.0]),
                     per_instrument=True)   # one compiled pass; entries are quantity x Greek
    book_vega, listed_vega = (float(v) for v in both.vega)
    book_gamma, listed_gamma = (float(g) for g in both.gamma)
    units_vega = -book_vega / listed_vega
    units_gamma = -book_gamma / listed_gamma
    t0 = {"book_vega_dv": book_vega, "listed_vega_dv": listed_vega,
          "book_gamma": book_gamma, "listed_gamma": listed_gamma,
          "delta_vega_units": units_vega, "delta_vega_gamma_left": book_gamma
          + units_vega * listed_gamma, "delta_gamma_units": units_gamma,
          "delta_gamma_vega_left": book_vega + units_gamma * listed_vega}

    strategies = [("delta", hj.DeltaHedge())]
    for name in cfg["option_hedges"]:
        cls = hj.DeltaVegaHedge if name == "delta-vega" else hj.DeltaGammaHedge
        strategies.append((name, cls(listed, costs=listed_costs)))
    results = {}
    for label, strategy in ctx.track(strategies, "hedging (Heston pricing in the loop)"):
        results[label] = hj.hedge(world, book, strategy, costs, grid, n, key)
    results = {"unhedged": unhedged_result(results["delta"]), **results}
    table = [_row(label, res) for label, res in results.items()]

    fig, ax = figure(ncols=2, size=(12.0, 4.4))
    histograms(ax[0, 0], {k: v.pnl for k, v in results.items()})
    ax[0, 0].set_title(f"long {plural(cfg['contracts'], 'call')} K={cfg['strike']:g}, "
                       f"T={cfg['maturity']:g} years, Heston: P&L after costs", fontsize=10)
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ax[0, 1].set_prop_cycle(color=colors[1:])   # same colours as the left panel
    histograms(ax[0, 1], {k: v.hedge_error for k, v in results.items() if k != "unhedged"},
               xlabel="P&L before costs at T ($)")
    ax[0, 1].set_title("the hedges alone, before costs, on their own range", fontsize=10)

    rows = {r["strategy"]: r for r in table}
    un, delta = rows["unhedged"], rows["delta"]
    findings = [
        f"Heston world (v0={cfg['v0']:g}, kappa={cfg['kappa']:g}, theta={cfg['theta']:g}, "
        f"xi={cfg['xi']:g}, rho={cfg['rho']:g}; Feller {'holds' if feller else 'fails'}), "
        f"{cfg['steps']} rebalances over {cfg['maturity']:g} years: V0 = "
        f"{float(results['delta'].initial_price):.3f}; the "
        f"unhedged P&L std is {un['std_pnl']:.3f} and delta hedging leaves "
        f"{delta['std_pnl']:.3f} ({delta['std_pnl'] / un['std_pnl']:.0%}), 99% ES "
        f"{delta['es_0.99']:.3f}.",
        f"At t0 the book's vega is {book_vega:.3f} per unit of variance and the listed "
        f"call's (K={cfg['listed_strike']:g}, T={cfg['listed_maturity']:g}) "
        f"{listed_vega:.3f}: delta-vega holds {units_vega:+.3f} units; gamma-neutral would "
        f"be {units_gamma:+.3f} units, leaving a vega of {t0['delta_gamma_vega_left']:+.3f} "
        f"(the book alone: {book_vega:+.3f}).",
    ]
    if "delta-vega" in rows:
        dv = rows["delta-vega"]
        findings.append(
            f"Delta-vega cuts the residual std from {delta['std_frictionless']:.3f} to "
            f"{dv['std_frictionless']:.3f} before costs "
            f"({1 - dv['std_frictionless'] / delta['std_frictionless']:.0%} less) and the "
            f"99% ES from {delta['es_frictionless_0.99']:.3f} to "
            f"{dv['es_frictionless_0.99']:.3f}; the listed option's spread of "
            f"{cfg['listed_half_spread']:g} a unit costs {dv['mean_cost']:.4f} on average "
            f"(std after costs {dv['std_pnl']:.3f}, mean {dv['mean_pnl']:+.4f}).")
    if "delta-gamma" in rows:
        dg = rows["delta-gamma"]
        verdict = ("worse than" if dg["std_frictionless"] > delta["std_frictionless"]
                   else "better than")
        findings.append(
            f"Delta-gamma with the same listed call leaves a residual std of "
            f"{dg['std_frictionless']:.3f} before costs, {verdict} delta alone "
            f"({delta['std_frictionless']:.3f}): neutralising gamma with a longer-dated "
            f"option imports its vega.")
    worst = max(table[1:], key=lambda r: abs(r["z_frictionless_vs_0"]))
    findings.append(
        f"Frictionless means are 0 in theory (true model, risk-neutral world); the largest "
        f"deviation is {worst['strategy']}'s {worst['mean_frictionless']:+.4f}, "
        f"{worst['z_frictionless_vs_0']:+.1f} standard errors.")
    share_costs = ("shares trade with no costs" if cfg["share_cost_rate"] == 0 else
                   f"shares pay {cfg['share_cost_rate']:.2%} of the traded value")
    caption = (f"Long {plural(cfg['contracts'], 'call')} (strike {cfg['strike']:g}, "
               f"{plural(maturity, 'year')}) bought at the Heston price in a Heston world, "
               f"hedged to expiry over {cfg['steps']} rebalances with shares, and for "
               f"delta-vega / delta-gamma a listed call (strike {cfg['listed_strike']:g}, "
               f"{plural(cfg['listed_maturity'], 'year')}) paying "
               f"${cfg['listed_half_spread']:g} a unit; {share_costs}; {n:,} paths. "
               f"Money in $ at expiry; P&L > 0 is a gain; 99% VaR and ES are positive losses. "
               f"Before costs: the same trades without costs (their mean is 0 in theory).")
    return Outcome(
        table=table, findings=findings, caption=caption,
        headers={"mean_frictionless": "mean before costs ($)",
                 "z_frictionless_vs_0": "z of mean before costs vs 0",
                 "std_frictionless": "std before costs ($)",
                 "es_frictionless_0.99": "99% ES before costs ($ loss)"},
        title="residual risk of a short-dated call under Heston, by hedge",
        display=["strategy", "mean_pnl", "std_pnl", "es_0.99", "mean_cost",
                 "std_frictionless", "es_frictionless_0.99"],
        results={"initial_price": float(results["delta"].initial_price),
                 "feller_condition_holds": feller, "t0_greeks": t0},
        figures={"pnl_hist": fig})
