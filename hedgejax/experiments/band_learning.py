"""band-learning: fit no-trade bands by gradient descent through the simulated hedge, and check
the fits against a brute-force grid search.

The user holds one at-the-money European call in a Black-Scholes world (zero rate, drift 0)
and hedges it with shares at proportional costs `cost_rate` x |trade value|. The objective
is `hj.risk.mean_cost_variance(lam)` = E[cost] + lam Var[hedge error] (time-T currency per
option; lam per unit of currency). Three bands around delta-neutral are fitted with `hj.fit`
(adam, cosine-decayed learning rate, fresh paths every step):

- constant: `hj.BandHedge(width)`, one parameter (the half-width in shares);
- Whalley-Wilmott: `hj.WhalleyWilmott(risk_aversion, scale)` with risk_aversion = 2 lam
  (an exponential utility's certainty equivalent is E - (gamma / 2) Var for a normal P&L,
  so gamma = 2 lam matches the objective) and only its `scale` trained: scale 1 is the
  Whalley-Wilmott (1997) asymptotic formula, the fitted scale says how far from optimal it
  is here. `hj.fit` trains every float leaf, risk_aversion included, which is redundant
  with scale (the width depends on scale x risk_aversion^(-1/3)); an optax multi_transform
  freezes it;
- learned: `hj.LearnedBand`, a Whalley-Wilmott term plus a small MLP of (moneyness,
  sqrt(time to maturity), gamma), started at the Whalley-Wilmott formula (scale 1) plus
  `learned_init_width` shares.

Every fitted band, the Whalley-Wilmott formula and delta hedging every step are evaluated
with `hj.evaluate` on the same `paths` fresh paths (key `fold_in(key(seed), 1)`; training
uses `fold_in(key(seed), 0)` and keys derived from it), with batch-means standard errors.
`hj.grid_search` sweeps the constant band's width and the Whalley-Wilmott scale on those same
paths; the gap between a fit and its family's grid minimum is given in units of the
evaluation SE and of the paired SE of the difference (batch means of the difference on the
common paths, much smaller because both rules see the same paths).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import cost_phrase, figure, plural
from ._framework import AtLeast, Context, NonNegative, Outcome, Positive

NAME = "band-learning"
QUESTION = ("Does gradient descent through the simulated hedge find the best no-trade band "
            "(constant, Whalley-Wilmott, learned) for E[cost] + lam Var, as a grid search "
            "would, and how good is the Whalley-Wilmott formula?")
BOUNDS = {"paths": AtLeast(400), "spot": Positive(), "strike": Positive(), "vol": Positive(),
          "maturity": Positive(), "steps": AtLeast(2), "cost_rate": Positive(),
          "lam": Positive(), "fit_steps": AtLeast(1), "fit_paths": AtLeast(16),
          "learning_rate": Positive(), "learned_learning_rate": Positive(),
          "init_width": Positive(), "learned_init_width": Positive(), "hidden": AtLeast(1),
          "depth": AtLeast(0),
          "grid_widths": NonNegative(), "grid_scales": Positive(), "batches": AtLeast(2)}


def _batch_objectives(result, lam: float, batches: int) -> np.ndarray:
    """E[cost] + lam Var[hedge error] on each of `batches` disjoint batches of paths."""
    cost = np.asarray(result.cost, dtype=float)
    err = np.asarray(result.hedge_error, dtype=float)
    n = cost.size // batches * batches
    cost, err = cost[:n].reshape(batches, -1), err[:n].reshape(batches, -1)
    return cost.mean(axis=1) + lam * err.var(axis=1, ddof=1)


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, x.size))
    kernel = np.ones(window) / window
    valid = np.convolve(x, kernel, mode="valid")
    return np.concatenate([np.full(window - 1, np.nan), valid])


FAMILIES = ("constant", "Whalley-Wilmott", "learned")


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import equinox as eqx
    import jax
    import optax

    import hedgejax as hj

    model = hj.BlackScholes(cfg["spot"], cfg["vol"])
    book = hj.EuropeanCall(cfg["strike"], cfg["maturity"])
    grid = hj.TimeGrid(cfg["maturity"], cfg["steps"])
    costs = hj.Proportional(cfg["cost_rate"])
    lam, n, batches = cfg["lam"], cfg["paths"], cfg["batches"]
    if n < 20 * batches:
        raise ValueError(f"config key 'paths' must be at least 20 x batches = {20 * batches}, "
                         f"got {n}")
    bands = cfg["bands"]
    if any(b not in FAMILIES for b in bands) or len(set(bands)) != len(bands):
        raise ValueError(f"config key 'bands' must list distinct band types among "
                         f"{', '.join(FAMILIES)}, got {bands!r}")
    objective = hj.risk.mean_cost_variance(lam=lam)
    train_key, eval_key = jax.random.fold_in(ctx.key, 0), jax.random.fold_in(ctx.key, 1)
    gamma = 2.0 * lam
    steps = cfg["fit_steps"]

    def adam(lr):
        return optax.adam(optax.cosine_decay_schedule(lr, steps))

    # Whalley-Wilmott: train the scale only (risk_aversion frozen)
    ww0 = hj.WhalleyWilmott(gamma, scale=1.0)

    def ww_labels(params):
        leaves, treedef = jax.tree.flatten(params)  # [risk_aversion, raw_scale]
        return jax.tree.unflatten(treedef, ["frozen", "train"][:len(leaves)])

    initial = {
        "constant": (hj.BandHedge(cfg["init_width"]), adam(cfg["learning_rate"])),
        "Whalley-Wilmott": (ww0, optax.multi_transform(
            {"train": adam(cfg["learning_rate"]), "frozen": optax.set_to_zero()}, ww_labels)),
        "learned": (hj.LearnedBand(jax.random.fold_in(ctx.key, 2), hidden=cfg["hidden"],
                                   depth=cfg["depth"], reference=cfg["strike"],
                                   init_width=cfg["learned_init_width"],
                                   init_ww=gamma ** (-1 / 3)),
                    adam(cfg["learned_learning_rate"])),
    }
    fitted, histories = {}, {}
    for family in bands:  # every fit sees the same training paths at a given step
        strategy, optimizer = initial[family]
        fitted[family], histories[family] = hj.fit(
            strategy, objective, model, book, costs, grid, key=train_key, optimizer=optimizer,
            steps=steps, n_paths=cfg["fit_paths"], progress=ctx.progress)

    # grid searches on the evaluation paths
    searches = {"constant": hj.grid_search(
        hj.BandHedge(cfg["init_width"]), "width", cfg["grid_widths"], objective, model, book,
        costs, grid, n_paths=n, key=eval_key)}
    if "Whalley-Wilmott" in bands:
        searches["Whalley-Wilmott"] = hj.grid_search(
            ww0, "scale", cfg["grid_scales"], objective, model, book, costs, grid, n_paths=n,
            key=eval_key)
    best_w = searches["constant"]["best"]
    best_s = searches.get("Whalley-Wilmott", {}).get("best")

    # (row label, parameters, strategy, the grid-searched family it is compared with)
    rules = [("delta every step", "width 0", hj.BandHedge(0.0), None),
             ("constant, grid best", f"width {best_w:.4f}", hj.BandHedge(best_w), "constant")]
    summary: dict[str, Any] = {}
    if "constant" in bands:
        summary["width"] = float(fitted["constant"].width)
        rules.insert(1, ("constant, fitted", f"width {summary['width']:.4f}",
                         fitted["constant"], "constant"))
    if "Whalley-Wilmott" in bands:
        summary["scale"] = float(fitted["Whalley-Wilmott"].scale)
        summary["risk_aversion_after_fit"] = float(fitted["Whalley-Wilmott"].risk_aversion)
        rules += [
            ("Whalley-Wilmott formula", f"scale 1, gamma {gamma:g}", ww0, "Whalley-Wilmott"),
            ("Whalley-Wilmott, fitted", f"scale {summary['scale']:.3f}, gamma {gamma:g}",
             fitted["Whalley-Wilmott"], "Whalley-Wilmott"),
            ("Whalley-Wilmott, grid best", f"scale {best_s:.3f}, gamma {gamma:g}",
             hj.WhalleyWilmott(gamma, best_s), "Whalley-Wilmott")]
    if "learned" in bands:
        learned = fitted["learned"]
        summary["learned_n_params"] = int(sum(
            x.size for x in jax.tree.leaves(eqx.filter(learned, eqx.is_inexact_array))))
        summary["learned_ww_coef"] = float(jax.nn.softplus(learned.raw_ww)[0])
        # its family contains every constant band: compared with the best of them
        rules.append(("learned, fitted", f"WW coef {summary['learned_ww_coef']:.3f} + MLP "
                      f"({summary['learned_n_params']} params)", learned, "constant"))

    evaluated, batch_obj = {}, {}
    for label, _, strategy, _ in ctx.track(rules, "evaluating"):
        evaluated[label] = hj.evaluate(strategy, objective, model, book, costs, grid,
                                       n_paths=n, key=eval_key, batches=batches)
        res = hj.hedge(model, book, strategy, costs, grid, n, eval_key)
        batch_obj[label] = _batch_objectives(res, lam, batches)

    def paired_se(a: str, b: str) -> float:
        d = batch_obj[a] - batch_obj[b]
        return float(np.std(d, ddof=1) / math.sqrt(batches))

    best_label = {"constant": "constant, grid best",
                  "Whalley-Wilmott": "Whalley-Wilmott, grid best"}
    best_param = {"constant": f"width {best_w:.4f}",
                  "Whalley-Wilmott": None if best_s is None else f"scale {best_s:.3f}"}
    table = []
    for label, param, _, ref in rules:
        e = evaluated[label]
        gap = pse = None
        # the grid best against itself is no comparison: its gap columns stay empty
        if ref is not None and label != best_label[ref]:
            gap = e["objective"] - evaluated[best_label[ref]]["objective"]
            pse = paired_se(label, best_label[ref])
        table.append({
            "band": label, "parameters": param, "objective": e["objective"],
            "objective_se": e["objective_stderr"], "mean_cost": e["mean_cost"],
            "std_hedge_error": e["std_hedge_error"], "std_pnl": e["std"],
            "mean_trades": e["mean_trades"],
            # the learned band has no grid of its own: no argmin (its gap is to the best
            # constant band)
            "grid_best": best_param[ref] if ref and not label.startswith("learned") else None,
            "gap_to_grid_best": gap,
            "gap_in_se": None if gap is None else gap / e["objective_stderr"],
            "gap_in_paired_se": None if not pse else gap / pse})

    rows = {r["band"]: r for r in table}
    delta, c_grid = rows["delta every step"], rows["constant, grid best"]
    findings = []
    if "constant" in bands:
        c_fit = rows["constant, fitted"]
        findings.append(
            f"Constant band: fitted half-width {summary['width']:.4f} shares against the grid "
            f"argmin {best_w:.4f} (grid spacing there {_spacing(cfg['grid_widths'], best_w):.4f});"
            f" objective {c_fit['objective']:.4f} +/- {c_fit['objective_se']:.4f} against "
            f"{c_grid['objective']:.4f} at the grid best, a gap of {c_fit['gap_in_se']:+.2f} SE "
            f"({_fmt_paired(c_fit)} paired SE).")
    if "Whalley-Wilmott" in bands:
        w_fit, w_one = rows["Whalley-Wilmott, fitted"], rows["Whalley-Wilmott formula"]
        w_grid = rows["Whalley-Wilmott, grid best"]
        findings.append(
            f"Whalley-Wilmott at gamma = 2 lam = {gamma:g}: the formula (scale 1) scores "
            f"{w_one['objective']:.4f} +/- {w_one['objective_se']:.4f}, "
            f"{w_one['gap_in_paired_se']:+.1f} paired SE above the grid minimum "
            f"{w_grid['objective']:.4f} (scale {best_s:.3f}); the fitted scale "
            f"{summary['scale']:.3f} scores {w_fit['objective']:.4f} "
            f"({_fmt_paired(w_fit)} paired SE) and closes {_closed(w_one, w_fit, w_grid)} of "
            "the formula's gap.")
        diff = w_grid["objective"] - c_grid["objective"]
        se = paired_se(best_label["Whalley-Wilmott"], best_label["constant"])
        findings.append(
            "Best Whalley-Wilmott against best constant band (grid minima on the same paths): "
            f"{diff:+.4f} ({diff / se:+.1f} paired SE).")
    if "learned" in bands:
        l_fit = rows["learned, fitted"]
        text = (f"Learned band ({summary['learned_n_params']} parameters): "
                f"{l_fit['objective']:.4f} +/- {l_fit['objective_se']:.4f}, "
                f"{l_fit['gap_to_grid_best']:+.4f} ({_fmt_paired(l_fit)} paired SE) against the "
                "best constant band")
        if "Whalley-Wilmott" in bands:
            diff = l_fit["objective"] - rows["Whalley-Wilmott, grid best"]["objective"]
            se = paired_se("learned, fitted", best_label["Whalley-Wilmott"])
            text += (f" and {diff:+.4f} ({diff / se:+.1f} paired SE) against the best "
                     "Whalley-Wilmott band")
        findings.append(text + ".")
    best_row = min(table, key=lambda r: r["objective"])
    findings.append(
        f"Delta hedging every step scores {delta['objective']:.4f} (cost "
        f"{delta['mean_cost']:.4f}, std {delta['std_hedge_error']:.4f}); the lowest objective "
        f"here is '{best_row['band']}' at {best_row['objective']:.4f}.")
    last = max(1, steps // 10)
    findings.append(
        f"Training (mean objective on the training paths, first vs last {last} steps): "
        + "; ".join(f"{k} {np.mean(h.objective[:last]):.4f} -> "
                    f"{np.mean(h.objective[-last:]):.4f}" for k, h in histories.items()) + ".")
    if "risk_aversion_after_fit" in summary and not math.isclose(
            summary["risk_aversion_after_fit"], gamma, rel_tol=1e-6):  # pragma: no cover
        findings.append(f"warning: risk_aversion moved to {summary['risk_aversion_after_fit']:g}"
                        " during the fit")

    paths = {}
    if "constant" in histories:
        paths["constant"] = np.asarray([float(histories["constant"].unravel(p).width)
                                        for p in histories["constant"].params]) / best_w
    if "Whalley-Wilmott" in histories:
        paths["Whalley-Wilmott"] = np.asarray(
            [float(histories["Whalley-Wilmott"].unravel(p).scale)
             for p in histories["Whalley-Wilmott"].params]) / best_s
    grid_min = {k: float(np.min(v["objective"])) for k, v in searches.items()}
    figures = {"training": _training_figure(histories, paths, best_w, best_s, grid_min),
               "grid_search": _grid_figure(searches, summary, cfg, lam, evaluated)}
    results = {
        "objective": f"E[cost] + {lam:g} Var[hedge error]",
        "eval_key": "fold_in(key(seed), 1)", "train_key": "fold_in(key(seed), 0)",
        "risk_aversion": gamma, "fitted": summary,
        "training": {k: {"objective": h.objective.tolist()} for k, h in histories.items()},
        "parameter_over_grid_argmin": {k: v.tolist() for k, v in paths.items()},
        "grid_search": {f: {k: np.asarray(v).tolist() for k, v in g.items()}
                        for f, g in searches.items()},
        "evaluated": evaluated,
    }
    return Outcome(
        table=table, findings=findings, results=results, figures=figures,
        # no square brackets: the terminal table's title is read as rich markup
        title=f"fitted bands vs grid search, objective E(cost) + {lam:g} Var(hedge error) on "
              f"{n:,} fresh paths",
        caption=(f"The book: one long call (strike {cfg['strike']:g}, spot {cfg['spot']:g}, "
                 f"{plural(cfg['maturity'], 'year')}, vol {cfg['vol']:.0%}) hedged with shares "
                 f"over {cfg['steps']} steps, {cost_phrase(cfg['cost_rate'], 'the value traded')}; "
                 f"every band scored on the same {n:,} fresh paths. Money in $ at T per call; "
                 f"objective = E[cost] + {lam:g} Var[hedge error] ($; lam per $), lower is "
                 f"better; a gap > 0 is worse than the grid's best (for the learned band: "
                 f"than the best constant band)."),
        headers=HEADERS,
        # the terminal: objective, its parts and the paired gap (80 columns; the grid's
        # argmin is the parameters of its "grid best" row); the files keep all
        display=["band", "parameters", "objective", "objective_se", "mean_cost",
                 "std_hedge_error", "gap_in_paired_se"])


HEADERS = {
    "band": "band",
    "parameters": "parameters (widths in shares)",
    "objective": "objective ($)",
    "objective_se": "std error ($)",
    "mean_cost": "mean cost ($)",
    "std_hedge_error": "hedge error std ($)",
    "std_pnl": "P&L std ($)",
    "mean_trades": "trades per path",
    "grid_best": "grid argmin",
    "gap_to_grid_best": "gap to grid best ($)",
    "gap_in_se": "gap / std error",
    "gap_in_paired_se": "gap / paired std error",
}


def _spacing(values: list[float], at: float) -> float:
    v = np.sort(np.asarray(values, dtype=float))
    if v.size < 2:
        return 0.0
    i = int(np.argmin(np.abs(v - at)))
    return float(np.max(np.diff(v)[max(0, i - 1):i + 1]))


def _fmt_paired(row: dict[str, Any]) -> str:
    x = row["gap_in_paired_se"]
    return "n/a" if x is None else f"{x:+.1f}"


def _closed(formula: dict[str, Any], fit: dict[str, Any], best: dict[str, Any]) -> str:
    gap = formula["objective"] - best["objective"]
    if gap <= 0:
        return "none (the formula is already at the grid minimum)"
    return f"{(formula['objective'] - fit['objective']) / gap:.0%}"


COLORS = {"constant": "tab:green", "Whalley-Wilmott": "tab:purple", "learned": "tab:red"}


def _training_figure(histories, paths, best_w, best_s, grid_min):
    fig, axes = figure(ncols=2, size=(11.0, 4.2))
    ax, ax2 = axes[0, 0], axes[0, 1]
    for label, h in histories.items():
        steps = np.arange(1, h.objective.size + 1)
        ax.plot(steps, h.objective, color=COLORS[label], alpha=0.25, linewidth=0.8)
        ax.plot(steps, _moving_average(h.objective, 10), color=COLORS[label], linewidth=1.8,
                label=f"{label} (10-step mean)")
    for label, value in grid_min.items():
        ax.axhline(value, color=COLORS[label], linestyle=":", linewidth=1,
                   label=f"{label}: grid minimum (eval paths)")
    ax.set_xlabel("adam step")
    ax.set_ylabel("objective on the step's fresh paths ($)")
    ax.set_title("training curves: E[cost] + lam Var[hedge error] per adam step", fontsize=9)
    ax.legend(fontsize=7)
    names = {"constant": f"constant width / grid argmin {best_w:.4f}",
             "Whalley-Wilmott": f"WW scale / grid argmin {best_s or 0:.3f}"}
    for label, path in paths.items():
        ax2.plot(np.arange(1, path.size + 1), path, color=COLORS[label], label=names[label])
    ax2.axhline(1.0, color="black", linewidth=0.8)
    ax2.set_xlabel("adam step")
    ax2.set_ylabel("parameter / grid argmin (1 = the grid's best)")
    ax2.set_title("parameters during the fit", fontsize=9)
    if paths:
        ax2.legend(fontsize=8)
    return fig


def _grid_figure(searches, summary, cfg, lam, evaluated):
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    panels = [("constant", "width", "half-width (shares)", "constant, fitted",
               f"constant band, ATM call, costs {cfg['cost_rate']:.2%}")]
    if "Whalley-Wilmott" in searches:
        panels.append(("Whalley-Wilmott", "scale", "Whalley-Wilmott scale (1 = the formula)",
                       "Whalley-Wilmott, fitted", f"Whalley-Wilmott band at gamma {2 * lam:g}"))
    fig, axes = figure(ncols=len(panels), size=(5.5 * len(panels), 4.2))
    for ax, (family, key, name, label, title) in zip(axes[0], panels, strict=True):
        g = searches[family]
        ax.plot(g["values"], g["objective"], marker="o", markersize=3, color="tab:gray",
                label="grid search (eval paths)")
        if label in evaluated:
            e = evaluated[label]
            ax.errorbar([summary[key]], [e["objective"]], yerr=[e["objective_stderr"]],
                        marker="*", markersize=12, color="tab:red", capsize=3,
                        label="fitted (+/- 1 SE)")
        if family == "Whalley-Wilmott":
            f = evaluated["Whalley-Wilmott formula"]
            ax.errorbar([1.0], [f["objective"]], yerr=[f["objective_stderr"]], marker="D",
                        color="tab:purple", capsize=3, label="Whalley-Wilmott formula (scale 1)")
        ax.axvline(g["best"], color="tab:gray", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(name)
        ax.set_ylabel(f"E[cost] + {lam:g} Var[hedge error] ($)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    return fig
