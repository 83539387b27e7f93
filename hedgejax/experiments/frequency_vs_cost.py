"""frequency-vs-cost: the efficient frontier of hedging rules, cost against residual risk.

The user holds one at-the-money European call in a Black-Scholes world (zero rate, drift 0)
and delta-hedges it with shares, paying proportional costs `cost_rate` x |trade value| at
every trade (the initial hedge included, no unwind at expiry). Every rule is a point
(std of hedge error, E[cost]): x is the std of the hedge error (payoff - price + hedge
gains, costs excluded: the risk the rule leaves), y the mean total cost, both in time-T
currency per option. The table also gives the std of P&L (= hedge error - cost).

Rule families, each swept over its parameter:
- calendar: delta-neutral every k grid steps (`every`), the textbook schedule;
- move-based: `hj.MoveBased(threshold)`, rebalance to delta-neutral when spot has moved by
  `threshold` (relative) since the last rebalance;
- fixed band: `hj.BandHedge(width)`, trade back to the nearest edge of +/- width shares;
- Whalley-Wilmott: `hj.WhalleyWilmott(risk_aversion)`, the asymptotically optimal band whose
  width grows with gamma;
- learned band: constant bands fitted by `hj.frontier` (adam through the simulated hedge) to
  minimise E[cost] + lam Var[hedge error] for each lam in `lams` (one vmapped optimisation).

Common random numbers: every rule is evaluated on the same `paths` paths drawn with the key
`fold_in(key(seed), 1)`; the band fits use `fold_in(key(seed), 0)` and keys derived from it,
so the evaluation paths are never trained on. References for calendar hedging (zero rate,
world drift 0): the expected cost c S0 |delta0| + c sqrt(2/pi) K phi(d2) (N_k - 1)
sqrt(dt_k / T), from E|d delta| = Gamma S sigma sqrt(dt_k) sqrt(2/pi) and
E[S_t^2 Gamma(t, S_t)] = K^2 p_T(K), constant in t; and Derman & Kamal's (1999) std of the
hedge error sqrt(pi/4) vega sigma sqrt(dt_k / T). N_k = ceil(steps / k) rebalances.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import cost_phrase, figure, log_ticks, plural
from ._framework import AtLeast, Context, Outcome, Positive

NAME = "frequency-vs-cost"
QUESTION = ("How much hedging cost buys how much risk reduction: which rebalancing rule "
            "(calendar, move-based, fixed band, Whalley-Wilmott, learned band) gives the least "
            "residual risk for the money?")
BOUNDS = {"paths": AtLeast(100), "spot": Positive(), "strike": Positive(), "vol": Positive(),
          "maturity": Positive(), "steps": AtLeast(2), "cost_rate": Positive(),
          "every": AtLeast(1), "thresholds": Positive(), "widths": Positive(),
          "risk_aversions": Positive(), "lams": Positive(), "lam_ref": Positive(),
          "fit_steps": AtLeast(1), "fit_paths": AtLeast(16), "learning_rate": Positive(),
          "init_width": Positive()}

FAMILIES = ("calendar", "move-based", "fixed band", "Whalley-Wilmott", "learned band")
STYLE = {"calendar": ("tab:blue", "o"), "move-based": ("tab:orange", "s"),
         "fixed band": ("tab:green", "^"), "Whalley-Wilmott": ("tab:purple", "D"),
         "learned band": ("tab:red", "*")}


def _calendar_class():
    import jax
    import jax.numpy as jnp

    import hedgejax as hj

    class Calendar(hj.AbstractStrategy):
        """`hj.DeltaHedge(every=k)` with k an array leaf, so that the rules can be vmapped
        (DeltaHedge keeps `every` static: one compilation per k)."""

        every: jax.Array

        def __call__(self, obs, position):
            return jnp.where(obs.step % self.every == 0, -obs.delta, position)

    return Calendar


def evaluate_family(make, values, model, book, costs, grid, n_paths, key, lam):
    """Statistics of `make(v)` for every v in `values`, all on the same paths (one compiled,
    vmapped call): dict of numpy arrays over the values."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import hedgejax as hj

    @eqx.filter_jit
    def run(vals):
        def one(v):
            res = hj.hedge(model, book, make(v), costs, grid, n_paths, key)
            return {"mean_cost": jnp.mean(res.cost),
                    "cost_se": jnp.std(res.cost) / math.sqrt(n_paths),
                    "std_hedge_error": hj.risk.std(res.hedge_error),
                    "std_pnl": hj.risk.std(res.pnl),
                    "mean_trades": jnp.mean(res.n_trades.astype(res.pnl.dtype)),
                    "objective": hj.risk.mean_cost_variance(res, lam)}
        return jax.vmap(one)(vals)

    return {k: np.asarray(v, dtype=float) for k, v in run(values).items()}


def calendar_theory(spot: float, strike: float, vol: float, maturity: float, steps: int,
                    cost_rate: float, k: int) -> tuple[float, float]:
    """(expected cost, std of hedge error) of delta hedging every k of `steps` steps, to
    leading order in the interval (zero rate, world drift 0); see the module docstring."""
    phi = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731
    sd = vol * math.sqrt(maturity)
    d1 = (math.log(spot / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    delta0 = 0.5 * (1 + math.erf(d1 / math.sqrt(2)))
    vega = spot * math.sqrt(maturity) * phi(d1)
    dt_k = k * maturity / steps
    n_k = math.ceil(steps / k)
    cost = (cost_rate * spot * delta0 + cost_rate * math.sqrt(2 / math.pi) * strike * phi(d2)
            * (n_k - 1) * math.sqrt(dt_k / maturity))
    std = math.sqrt(math.pi / 4) * vega * vol * math.sqrt(dt_k / maturity)
    return cost, std


def cost_at_std(stds: np.ndarray, costs: np.ndarray, s: float) -> float | None:
    """A family's cost at hedge-error std `s`, linear between its points sorted by std;
    None outside its range."""
    order = np.argsort(stds)
    x, y = np.asarray(stds)[order], np.asarray(costs)[order]
    if s < x[0] or s > x[-1]:
        return None
    return float(np.interp(s, x, y))


def _label(family: str, value: float) -> str:
    if family == "calendar":
        return "every step" if int(value) == 1 else f"every {int(value)} steps"
    return {
            "move-based": f"move {value:.2%}",
            "fixed band": f"+/-{value:g} sh",
            "Whalley-Wilmott": f"risk av. {value:g}",
            "learned band": f"lam {value:g}"}[family]


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax
    import jax.numpy as jnp
    import optax

    import hedgejax as hj

    if cfg["steps"] < max(cfg["every"]):
        raise ValueError(f"config key 'every' must not exceed steps = {cfg['steps']}, "
                         f"got {max(cfg['every'])}")
    model = hj.BlackScholes(cfg["spot"], cfg["vol"])
    book = hj.EuropeanCall(cfg["strike"], cfg["maturity"])
    grid = hj.TimeGrid(cfg["maturity"], cfg["steps"])
    costs = hj.Proportional(cfg["cost_rate"])
    train_key, eval_key = jax.random.fold_in(ctx.key, 0), jax.random.fold_in(ctx.key, 1)
    n, lam_ref = cfg["paths"], cfg["lam_ref"]

    fitted = hj.frontier(
        cfg["lams"], model, book, costs, grid, key=train_key, every=[1],
        init_width=cfg["init_width"], steps=cfg["fit_steps"], n_paths=cfg["fit_paths"],
        eval_paths=128,  # its own evaluation is not used: every rule is re-evaluated below
        optimizer=optax.adam(optax.cosine_decay_schedule(cfg["learning_rate"],
                                                         cfg["fit_steps"])))
    learned_widths = np.asarray(fitted["bands"]["width"], dtype=float)

    calendar = _calendar_class()
    n_fixed = len(cfg["widths"])
    sweeps = [  # fixed and learned bands share one compiled evaluation
        ("calendar", lambda k: calendar(k), jnp.asarray(cfg["every"], dtype=jnp.int32)),
        ("move-based", lambda t: hj.MoveBased(t), jnp.asarray(cfg["thresholds"])),
        ("bands", lambda w: hj.BandHedge(w),
         jnp.asarray(np.concatenate([cfg["widths"], learned_widths]))),
        ("Whalley-Wilmott", lambda g: hj.WhalleyWilmott(g), jnp.asarray(cfg["risk_aversions"])),
    ]
    measured = {}
    for family, make, values in ctx.track(sweeps, "evaluating rules"):
        measured[family] = evaluate_family(make, values, model, book, costs, grid, n, eval_key,
                                           lam_ref)
    bands = measured.pop("bands")
    measured["fixed band"] = {k: v[:n_fixed] for k, v in bands.items()}
    measured["learned band"] = {k: v[n_fixed:] for k, v in bands.items()}
    params = {"calendar": cfg["every"], "move-based": cfg["thresholds"],
              "fixed band": cfg["widths"], "Whalley-Wilmott": cfg["risk_aversions"],
              "learned band": cfg["lams"]}
    stats = {f: {"param": np.asarray(params[f], dtype=float), **measured[f]} for f in FAMILIES}
    stats["learned band"]["width"] = learned_widths

    table = []
    for family in FAMILIES:
        s = stats[family]
        for i, p in enumerate(s["param"]):
            theory_cost = theory_std = None
            if family == "calendar":
                theory_cost, theory_std = calendar_theory(
                    cfg["spot"], cfg["strike"], cfg["vol"], cfg["maturity"], cfg["steps"],
                    cfg["cost_rate"], int(p))
            table.append({
                "family": family, "rule": _label(family, float(p)), "parameter": float(p),
                "std_hedge_error": float(s["std_hedge_error"][i]),
                "mean_cost": float(s["mean_cost"][i]), "cost_se": float(s["cost_se"][i]),
                "std_pnl": float(s["std_pnl"][i]), "mean_trades": float(s["mean_trades"][i]),
                f"objective_lam{lam_ref:g}": float(s["objective"][i]),
                "theory_cost": theory_cost, "theory_std": theory_std,
                "band_width": (float(learned_widths[i]) if family == "learned band"
                               else None)})

    # ---- measured comparisons ------------------------------------------------------
    cal = stats["calendar"]
    savings: dict[str, list[float]] = {}
    for family in FAMILIES[1:]:
        s = stats[family]
        rel = []
        for cs, cc in zip(cal["std_hedge_error"], cal["mean_cost"], strict=True):
            c = cost_at_std(s["std_hedge_error"], s["mean_cost"], float(cs))
            if c is not None:
                rel.append(1.0 - c / float(cc))
        savings[family] = rel

    # lower envelope of the other families at each learned band's std
    learned = stats["learned band"]
    gaps = []
    for i in range(len(learned["param"])):
        s0, c0 = float(learned["std_hedge_error"][i]), float(learned["mean_cost"][i])
        per_family = {f: cost_at_std(stats[f]["std_hedge_error"], stats[f]["mean_cost"], s0)
                      for f in FAMILIES[:-1]}
        per_family = {f: c for f, c in per_family.items() if c is not None}
        if per_family:
            best = min(per_family, key=per_family.get)
            gaps.append({"lam": float(learned["param"][i]), "std": s0, "cost": c0,
                         "envelope_family": best, "envelope_cost": per_family[best],
                         "gap": c0 / per_family[best] - 1.0,
                         "fixed_band_cost": per_family.get("fixed band")})

    # Pareto-efficient rules among all evaluated points
    pts = [(r["std_hedge_error"], r["mean_cost"], r["family"]) for r in table]
    efficient = [f for (s0, c0, f) in pts
                 if not any(s1 <= s0 and c1 <= c0 and (s1, c1) != (s0, c0)
                            for (s1, c1, _) in pts)]
    pareto = {f: efficient.count(f) for f in FAMILIES}
    dominance = hj.band_dominates({
        "bands": {"mean_cost": learned["mean_cost"],
                  "std_hedge_error": learned["std_hedge_error"]},
        "calendar": {"mean_cost": cal["mean_cost"], "std_hedge_error": cal["std_hedge_error"]}})
    ref_col = f"objective_lam{lam_ref:g}"
    best_by_family = {f: min((r for r in table if r["family"] == f), key=lambda r: r[ref_col])
                      for f in FAMILIES}

    # ---- findings --------------------------------------------------------------------
    daily = table[0]
    findings = [
        f"Calendar hedging: {daily['rule']} costs {daily['mean_cost']:.4f} "
        f"(+/- {daily['cost_se']:.4f}; leading-order theory {daily['theory_cost']:.4f}) for a "
        f"hedge-error std of {daily['std_hedge_error']:.4f} (Derman-Kamal "
        f"{daily['theory_std']:.4f}); {table[len(cal['param']) - 1]['rule']} costs "
        f"{cal['mean_cost'][-1]:.4f} for std {cal['std_hedge_error'][-1]:.4f}.",
    ]
    for family, rel in savings.items():
        if len(rel) == 1:
            findings.append(
                f"At equal hedge-error std, {family} costs {rel[0]:.0%} less than calendar "
                "hedging (at the one calendar rule inside its std range).")
        elif rel:
            findings.append(
                f"At equal hedge-error std, {family} costs {np.median(rel):.0%} less than "
                f"calendar hedging (median over the {len(rel)} calendar rules inside its std "
                f"range; from {min(rel):.0%} to {max(rel):.0%}).")
        else:
            findings.append(f"{family}: no calendar rule falls inside its std range.")
    findings.append(
        "Rules on the Pareto front (no other rule both cheaper and less risky): "
        + ", ".join(f"{f} {k}" for f, k in pareto.items()) + f" of {len(table)} rules.")
    if gaps:
        worst = max(gaps, key=lambda g: g["gap"])
        to_fixed = [g["cost"] / g["fixed_band_cost"] - 1.0 for g in gaps
                    if g["fixed_band_cost"] is not None]
        findings.append(
            "Learned bands against the lower envelope of the other families at the same std: "
            f"cost gap from {min(g['gap'] for g in gaps):+.1%} to {worst['gap']:+.1%} (largest "
            f"at lam {worst['lam']:g}, std {worst['std']:.3f}, where the envelope is "
            f"{worst['envelope_family']})"
            + (f"; against the fixed-band curve alone from {min(to_fixed):+.1%} to "
               f"{max(to_fixed):+.1%}." if to_fixed else "."))
    ww, fb = stats["Whalley-Wilmott"], stats["fixed band"]
    ww_vs_band = []
    for s0, c0 in zip(ww["std_hedge_error"], ww["mean_cost"], strict=True):
        c = cost_at_std(fb["std_hedge_error"], fb["mean_cost"], float(s0))
        if c is not None:
            ww_vs_band.append((float(s0), float(c0) / c - 1.0))
    if ww_vs_band:
        best_ww = min(ww_vs_band, key=lambda t: t[1])
        worst_ww = max(ww_vs_band, key=lambda t: t[1])
        findings.append(
            f"Whalley-Wilmott against the fixed band at equal std: from {best_ww[1]:+.1%} "
            f"(std {best_ww[0]:.3f}) to {worst_ww[1]:+.1%} (std {worst_ww[0]:.3f}).")
    if lam_ref in [float(x) for x in cfg["lams"]]:
        i = [float(x) for x in cfg["lams"]].index(lam_ref)
        grid_best = best_by_family["fixed band"]
        findings.append(
            f"The band learned at lam {lam_ref:g} has half-width {learned_widths[i]:.4f} "
            f"shares and objective {learned['objective'][i]:.4f}, against "
            f"{grid_best[ref_col]:.4f} for the best fixed band of the sweep "
            f"({grid_best['rule']}).")
    if dominance.size:
        findings.append(
            f"hj.band_dominates: the learned-band frontier beats {int(dominance.sum())} of the "
            f"{dominance.size} calendar rules whose cost lies in its range.")
    findings.append(
        f"Objective E[cost] + {lam_ref:g} Var[hedge error], best rule per family: "
        + "; ".join(f"{f} {r['rule']} {r[ref_col]:.4f}" for f, r in best_by_family.items())
        + ".")

    # ---- figures -----------------------------------------------------------------------
    fig, axes = figure(ncols=2, size=(12.0, 4.8))
    ax, ax2 = axes[0, 0], axes[0, 1]
    for family in FAMILIES:
        s = stats[family]
        color, marker = STYLE[family]
        order = np.argsort(s["std_hedge_error"])
        learned_fam = family == "learned band"
        ax.plot(s["std_hedge_error"][order], s["mean_cost"][order], marker=marker,
                color=color, linestyle="none" if learned_fam else "-",
                markersize=12 if learned_fam else 5, label=family, zorder=3 if learned_fam
                else 2)
        if learned_fam:
            # one label per spot: fits that land (within 3%) on the same point share it
            # ("lam 1, 3, 10") instead of printing over each other
            spots: list[tuple[float, float, list[str]]] = []
            for x, y, lam in zip(s["std_hedge_error"], s["mean_cost"], s["param"],
                                 strict=True):
                near = [sp for sp in spots if abs(math.log(sp[0] / x)) < 0.03
                        and abs(math.log(sp[1] / y)) < 0.03]
                if near:
                    near[0][2].append(f"{lam:g}")
                else:
                    spots.append((float(x), float(y), [f"{lam:g}"]))
            for x, y, lams in spots:
                ax.annotate(f"lam {', '.join(lams)}", (x, y), textcoords="offset points",
                            xytext=(6, 4), fontsize=7, color=color)
        rel = []
        for x, y in zip(s["std_hedge_error"][order], s["mean_cost"][order], strict=True):
            c = cost_at_std(cal["std_hedge_error"], cal["mean_cost"], float(x))
            rel.append(np.nan if c is None else 100.0 * (y / c - 1.0))
        ax2.plot(s["std_hedge_error"][order], rel, marker=marker, color=color,
                 linestyle="none" if learned_fam else "-",
                 markersize=12 if learned_fam else 5, label=family)
    theory = [calendar_theory(cfg["spot"], cfg["strike"], cfg["vol"], cfg["maturity"],
                              cfg["steps"], cfg["cost_rate"], int(k)) for k in cal["param"]]
    ax.plot([t[1] for t in theory], [t[0] for t in theory], color="tab:blue", linestyle=":",
            linewidth=1, label="calendar, leading-order theory")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax2.set_xscale("log")
    for axis in (ax.xaxis, ax.yaxis, ax2.xaxis):
        log_ticks(axis, min_labels=6)
    ax.set_xlabel("std of hedge error at T ($ per option, log scale)")
    ax.set_ylabel("mean hedging cost at T ($ per option, log scale)")
    ax.set_title(f"ATM call, {cfg['steps']} steps over {cfg['maturity']:g}y, "
                 f"costs {cfg['cost_rate']:.2%} of traded value", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax2.axhline(0.0, color="tab:blue", linewidth=1)
    ax2.set_xlabel("std of hedge error at T ($ per option, log scale)")
    ax2.set_ylabel("cost vs calendar at the same std (%)")
    ax2.set_title("below 0: cheaper than calendar rebalancing for the same risk", fontsize=9)
    ax2.grid(True, which="both", alpha=0.3)

    results = {
        "x_axis": "std of hedge error (time-T currency per option)",
        "y_axis": "mean total hedging cost (time-T currency per option)",
        "eval_key": "fold_in(key(seed), 1)", "train_key": "fold_in(key(seed), 0)",
        "families": {f: {k: v.tolist() for k, v in s.items()} for f, s in stats.items()},
        "savings_vs_calendar_at_equal_std": savings,
        "learned_band_vs_envelope": gaps,
        "whalley_wilmott_vs_fixed_band": ww_vs_band,
        "pareto_counts": pareto,
        "band_dominates": dominance.tolist(),
    }
    caption = (f"One long at-the-money call (strike {cfg['strike']:g}, "
               f"{plural(cfg['maturity'], 'year')}, vol {cfg['vol']:.0%}) delta-hedged with "
               f"shares over {cfg['steps']} steps, {cost_phrase(cfg['cost_rate'])}; every "
               f"rule on the "
               f"same {n:,} paths. Money in $ per option at expiry; hedge error = P&L before "
               f"costs; objective = E[cost] + {lam_ref:g} Var[hedge error]. Parameter: every k "
               f"steps (calendar), relative move, half-width in shares (bands), risk aversion "
               f"(Whalley-Wilmott), lam (learned band). Theory only for calendar rules (—).")
    return Outcome(
        table=table, findings=findings, results=results, figures={"frontier": fig},
        caption=caption,
        headers={"std_hedge_error": "hedge error std ($)", "mean_cost": "mean cost ($)",
                 "cost_se": "SE of mean cost ($)", "mean_trades": "trades per path",
                 ref_col: f"objective (lam {lam_ref:g})", "theory_cost": "theory cost ($)",
                 "theory_std": "theory std ($)", "band_width": "learned half-width (shares)"},
        title="every rule on the same paths: risk (std of hedge error) against mean cost",
        # the terminal (80 columns): risk, cost, trades, the objective and the theory of the
        # risk; the files keep all (the theory of the cost matches the measured cost closely)
        display=["family", "rule", "std_hedge_error", "mean_cost", "mean_trades", ref_col,
                 "theory_std"])
