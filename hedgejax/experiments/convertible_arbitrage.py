"""convertible-arbitrage: long a convertible bond, short its delta in shares. What pays (gamma
on realised vol, the coupon and the credit spread), and what costs (hedging costs, a wider
credit spread, a default)?

Setup. One convertible (`hj.Convertible`: face `face`, `conversion_ratio` shares, converted at
maturity only, coupons paid at maturity) is bought at its Tsiveriotis-Fernandes price with
the market's `credit_spread` on the bond floor and Black-Scholes at `implied_vol`, and
delta-hedged with shares (position = -delta of that price, by autodiff). Worlds are
risk-neutral (drift rate - div), so every mean P&L is a price difference that the table
shows as `theory`:

- gamma P&L: worlds with realised vol in `realised_vols` and no default, hedged daily,
  frictionless. The mean is (V(realised vol, no credit) - price paid) e^{rT}: the sum over
  the life of 0.5 Gamma S^2 (realised^2 - implied^2) dt (the gamma P&L) plus the credit
  discount earned because no default happens (the carry of the spread).
- hedging frequency and costs: the world at the implied vol, rebalanced every
  `rebalance_days` trading days, paying `cost_rate` of the traded value.
- default: a world where the issuer defaults at intensity `hazard`; at default the share
  falls by `default_jump` and the bond pays `recovery` x face (module hedgejax._convertible).
  The engine's `hj.hedge` holds claims paid at T, so this row runs its own jitted lax.scan
  (`_default_world`): daily delta from the same price, the hedge closed at default, the
  recovery accrued to T at the rate, same money conventions as `hj.hedge`. Its mean is
  (V(hazard model, no spread) - price paid) e^{rT}: whether the spread paid for the default.

Money is in time-T currency per bond; P&L > 0 is a gain; VaR and ES are positive losses at
`alpha`. The t0 carry (coupon, short rebate, dividends on the short, financing of the bond)
and the mark-to-market loss of a spread widening by `spread_shock` are closed-form numbers
from the pricer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import DAYS_PER_YEAR, daily_grid, figure, stats_row
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "convertible-arbitrage"
QUESTION = ("Long a convertible, short its delta in shares: how much do realised vol, the "
            "coupon and the credit spread pay, and what do hedging costs, a wider spread "
            "and a default cost?")
BOUNDS = {"paths": AtLeast(100), "spot": Positive(), "face": Positive(),
          "conversion_ratio": Positive(), "maturity": Positive(), "coupon": NonNegative(),
          "credit_spread": NonNegative(), "implied_vol": Positive(),
          "realised_vols": Positive(), "rate": Between(-0.5, 0.5),
          "div": Between(-0.5, 0.5), "cost_rate": Between(0.0, 0.1, closed=True),
          "rebalance_days": AtLeast(1), "spread_shock": NonNegative(),
          "hazard": NonNegative(), "recovery": Between(0.0, 1.0, closed=True),
          "default_jump": Between(0.0, 1.0, closed=True), "alpha": Between(0.5, 1.0)}


def _default_world(world_bond, paid_bond, vol, rate, div, spot, grid, n_paths, key):
    """Delta hedge of one convertible (bought at `paid_bond`'s Black-Scholes price, hedged
    with its delta) in the jump-to-default world of `world_bond` (its hazard, jump and
    recovery), every step, frictionless. Returns (hedged pnl, unhedged pnl, defaulted).

    Per step: the hedge h_i = -delta(S_i, t_i); the pre-default share moves by exact GBM at
    drift r - q + hazard x jump; default arrives in the step with probability
    1 - e^{-hazard dt} (at its end: the share falls by the jump, the bond pays recovery x
    face, the hedge's gain on the jump is kept and the position closed). Gains
    h_i (S_{i+1} e^{q dt} - S_i e^{r dt}) and the recovery accrue to T at the rate."""
    import jax
    import jax.numpy as jnp

    import hedgejax as hj
    from hedgejax._convertible import convertible_value

    believed = hj.BlackScholes(spot, vol, rate, div)
    v0 = hj.price(believed, paid_bond)
    n, dt, T = grid.n_steps, grid.dt, grid.maturity
    lam, eta = world_bond.hazard, world_bond.default_jump

    def delta(s, t):
        return jax.grad(lambda x: convertible_value(believed, paid_bond, jnp.log(x),
                                                    T - t))(s)

    deltas = jax.vmap(delta, in_axes=(0, None))

    @jax.jit
    def simulate(key):
        k_z, k_u = jax.random.split(key)
        z = jax.random.normal(k_z, (n, n_paths))
        u = jax.random.uniform(k_u, (n, n_paths))

        def step(carry, inputs):
            s, alive, gains, recovered = carry
            i, z_i, u_i = inputs
            t = i * dt
            h = jnp.where(alive, -deltas(s, t), 0.0)
            pre = s * jnp.exp((rate - div + lam * eta - 0.5 * vol**2) * dt
                              + vol * math.sqrt(dt) * z_i)
            hit = alive & (u_i < -jnp.expm1(-lam * dt))
            s_next = jnp.where(hit, pre * (1.0 - eta), pre)
            to_end = jnp.exp(rate * (T - (i + 1) * dt))
            gains = gains + h * (s_next * jnp.exp(div * dt) - s * jnp.exp(rate * dt)) * to_end
            recovered = recovered + jnp.where(
                hit, world_bond.recovery * world_bond.face * to_end, 0.0)
            return (s_next, alive & ~hit, gains, recovered), None

        start = (jnp.full((n_paths,), spot), jnp.ones((n_paths,), bool),
                 jnp.zeros((n_paths,)), jnp.zeros((n_paths,)))
        (s_T, alive, gains, recovered), _ = jax.lax.scan(
            step, start, (jnp.arange(n, dtype=z.dtype), z, u))
        book = jnp.where(alive, paid_bond.payoff(s_T), recovered)
        unhedged = book - v0 * jnp.exp(rate * T)
        return unhedged + gains, unhedged, ~alive, s_T

    pnl, unhedged, defaulted, s_T = simulate(key)
    return pnl, unhedged, defaulted, s_T, v0


def _interval(days: int) -> str:
    return {1: "daily", 5: "weekly", 21: "monthly"}.get(days, f"every {days} days")


def _as_result(pnl, unhedged, s_T, v0):
    import jax.numpy as jnp

    import hedgejax as hj

    zero = jnp.zeros_like(pnl)
    return hj.HedgeResult(pnl=pnl, hedge_error=pnl, cost=zero,
                          n_trades=jnp.zeros(zero.shape, jnp.int32), unhedged_pnl=unhedged,
                          final_position=zero, terminal_spot=s_T, initial_price=v0)


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax
    import jax.numpy as jnp

    import hedgejax as hj

    grid = daily_grid(cfg["maturity"])
    T, spot, rate, div = grid.maturity, cfg["spot"], cfg["rate"], cfg["div"]
    vol_i, alpha, n = cfg["implied_vol"], cfg["alpha"], cfg["paths"]
    terms = dict(face=cfg["face"], conversion_ratio=cfg["conversion_ratio"], maturity=T,
                 coupon=cfg["coupon"])
    paid = hj.Convertible(**terms, credit_spread=cfg["credit_spread"])
    riskless = hj.Convertible(**terms)
    defaultable = hj.Convertible(**terms, hazard=cfg["hazard"], recovery=cfg["recovery"],
                                 default_jump=cfg["default_jump"])
    wider = hj.Convertible(**terms, credit_spread=cfg["credit_spread"] + cfg["spread_shock"])
    believed = hj.BlackScholes(spot, vol_i, rate, div)
    growth = math.exp(rate * T)
    v_paid = float(hj.price(believed, paid))
    es_key = f"es_{alpha:g}"
    key = ctx.key

    def theory(world_model, world_bond):
        return (float(hj.price(world_model, world_bond)) - v_paid) * growth

    table, pnl_samples = [], {}
    vol_curve = []
    for vol_r in ctx.track(cfg["realised_vols"], "realised vols"):
        world = hj.BlackScholes(spot, vol_r, rate, div)
        res = hj.hedge(world, paid, hj.DeltaHedge(), hj.NoCost(), grid, n, key,
                       hedge_model=believed)
        row = stats_row(f"realised vol {vol_r:.0%}", res, alpha=alpha,
                        theory_mean=theory(world, riskless))
        table.append(row)
        vol_curve.append((vol_r, row["mean_pnl"], row["stderr"]))
        if vol_r == vol_i:
            pnl_samples["no default, daily"] = np.asarray(res.pnl, float)

    world = hj.BlackScholes(spot, vol_i, rate, div)
    freq_rows = []
    for days in ctx.track(cfg["rebalance_days"], "hedging frequency"):
        res = hj.hedge(world, paid, hj.DeltaHedge(every=int(days)),
                       hj.Proportional(cfg["cost_rate"]), grid, n, key, hedge_model=believed)
        every = _interval(int(days))
        row = stats_row(f"{every}, cost {cfg['cost_rate']:.2%}", res, alpha=alpha,
                        theory_mean=None)
        table.append(row)
        freq_rows.append((int(days), row))

    pnl, unhedged, defaulted, s_T, v0 = _default_world(
        defaultable, paid, vol_i, rate, div, spot, grid, n, jax.random.fold_in(key, 1))
    default_theory = theory(world, defaultable)
    hedged = stats_row(f"default {cfg['hazard']:.0%}/yr, hedged",
                       _as_result(pnl, unhedged, s_T, v0), alpha=alpha,
                       theory_mean=default_theory)
    bare = stats_row(f"default {cfg['hazard']:.0%}/yr, unhedged",
                     _as_result(unhedged, unhedged, s_T, v0), alpha=alpha,
                     theory_mean=default_theory)
    table += [hedged, bare]
    pnl_samples["default risk, daily"] = np.asarray(pnl, float)
    pnl_samples["default risk, unhedged"] = np.asarray(unhedged, float)
    hit = np.asarray(defaulted)
    p_default = float(hit.mean())
    pnl_np = np.asarray(pnl, float)
    unhedged_np = np.asarray(unhedged, float)
    loss_given_default = -float(pnl_np[hit].mean()) if hit.any() else float("nan")
    loss_given_default_unhedged = -float(unhedged_np[hit].mean()) if hit.any() else float("nan")

    # t0 carry per year and the credit shocks (closed form, per bond)
    g = hj.greeks(believed, paid)
    delta, gamma = float(g.delta), float(g.gamma)
    carry = {"coupon": cfg["coupon"] * cfg["face"], "short_rebate": rate * delta * spot,
             "dividends_on_short": -div * delta * spot, "financing": -rate * v_paid}
    carry["net_cash_carry"] = sum(carry.values())
    credit_carry = (float(hj.price(believed, riskless)) - v_paid) * growth / T
    widening_loss = v_paid - float(hj.price(believed, wider))
    jump_loss_hedged = v_paid - cfg["recovery"] * cfg["face"] - delta * spot * cfg["default_jump"]
    jump_loss_unhedged = v_paid - cfg["recovery"] * cfg["face"]
    theta_day = float(g.theta) / DAYS_PER_YEAR
    gamma_day = 0.5 * gamma * spot**2 * vol_i**2 / DAYS_PER_YEAR

    rows = {r["strategy"]: r for r in table}
    at_implied = rows.get(f"realised vol {vol_i:.0%}")
    low, high = table[0], table[len(cfg["realised_vols"]) - 1]
    findings = [
        f"The convertible (face {cfg['face']:g}, {cfg['conversion_ratio']:g} shares, "
        f"conversion price {cfg['face'] / cfg['conversion_ratio']:.2f}, spot {spot:g}, "
        f"{T:g} year{'s' if T != 1 else ''}) costs {v_paid:.3f} at {vol_i:.0%} implied vol and a "
        f"{cfg['credit_spread']:.1%} spread; its delta is {delta:.3f} shares and gamma "
        f"{gamma:.4f}: at {vol_i:.0%} realised vol the hedged position's gamma earns about "
        f"{gamma_day:.4f} a day (0.5 Gamma S^2 vol^2 / {DAYS_PER_YEAR}), against a theta "
        f"of {theta_day:+.4f} a day.",
        f"Gamma P&L: delta-hedged daily, the mean P&L goes from {low['mean_pnl']:+.3f} "
        f"(+/- {low['stderr']:.3f}) at {cfg['realised_vols'][0]:.0%} realised vol to "
        f"{high['mean_pnl']:+.3f} at {cfg['realised_vols'][-1]:.0%}; the theory (V(realised "
        f"vol) - price paid) e^{{rT}} says {low['theory_mean']:+.3f} and "
        f"{high['theory_mean']:+.3f}.",
    ]
    if at_implied is not None:
        findings.append(
            f"Carry: at realised = implied vol the arbitrage still earns "
            f"{at_implied['mean_pnl']:+.3f} +/- {at_implied['stderr']:.3f} per bond "
            f"(theory {at_implied['theory_mean']:+.3f}): the credit spread, "
            f"{credit_carry:.3f} a year, paid because no default happens in that world. The "
            f"t0 cash carry is {carry['net_cash_carry']:+.3f} a year (coupon "
            f"{carry['coupon']:.3f}, short rebate {carry['short_rebate']:.3f}, dividends on "
            f"the short {carry['dividends_on_short']:.3f}, financing of the bond "
            f"{carry['financing']:.3f}).")
    costly = {days: row for days, row in freq_rows}
    if costly:
        parts = "; ".join(f"{_interval(d)}: std {r['std_pnl']:.3f}, cost "
                          f"{r['mean_cost']:.3f}, mean {r['mean_pnl']:+.3f}"
                          for d, r in costly.items())
        findings.append(f"Hedging frequency at {cfg['cost_rate']:.2%} cost: {parts}.")
    findings.append(
        f"Credit: a spread widening of {cfg['spread_shock']:.1%} marks the bond down by "
        f"{widening_loss:.3f} at once, which the short shares do not offset (the share "
        f"price need not move). A default at t0 loses {jump_loss_unhedged:.3f} unhedged "
        f"and {jump_loss_hedged:.3f} hedged (the short {delta:.3f} shares gain "
        f"{delta * spot * cfg['default_jump']:.3f} on the {cfg['default_jump']:.0%} jump).")
    verdict = "paid" if default_theory > 0 else "did not pay"
    calm_es = at_implied[es_key] if at_implied else float("nan")
    findings.append(
        f"In the world with {cfg['hazard']:.0%}/yr default intensity ({p_default:.1%} of "
        f"paths default before maturity) the hedged mean P&L is {hedged['mean_pnl']:+.3f} "
        f"+/- {hedged['stderr']:.3f} (theory {default_theory:+.3f}): the spread {verdict} "
        f"for the default risk. Paths that default lose {loss_given_default:.2f} on average "
        f"hedged ({loss_given_default_unhedged:.2f} unhedged); the {alpha:.0%} ES is "
        f"{hedged[es_key]:.2f} against {calm_es:.2f} without default: the short-credit "
        "tail of a delta-hedged convertible.")

    # Figure 1: the convertible's value and delta against spot
    spots = np.linspace(0.4 * spot, 2.0 * spot, 121)
    bonds = {f"spread {cfg['credit_spread']:.1%} (paid)": paid,
             f"spread {cfg['credit_spread'] + cfg['spread_shock']:.1%} (widened)": wider,
             "no credit risk": riskless,
             f"default model (hazard {cfg['hazard']:.0%})": defaultable}
    values = {k: np.asarray(jax.vmap(lambda s, b=b: hj.price(believed, b, spot=s))(
        jnp.asarray(spots))) for k, b in bonds.items()}
    # autodiff delta of the price, one vmapped program per bond (not one greeks() per spot)
    deltas = {k: np.asarray(jax.vmap(jax.grad(lambda s, b=b: hj.price(believed, b, spot=s)))(
        jnp.asarray(spots[::4]))) for k, b in bonds.items()}
    fig1, ax1 = figure(ncols=2, size=(12.0, 4.6))
    fig1.suptitle(f"Convertible: face {cfg['face']:g}, {cfg['conversion_ratio']:g} shares, "
                  f"{T:g} year{'s' if T != 1 else ''}, Black-Scholes {vol_i:.0%} vol, rate "
                  f"{rate:.1%}", fontsize=11)
    for k, v in values.items():
        ax1[0, 0].plot(spots, v, label=k)
    floor = cfg["face"] * (1 + cfg["coupon"] * T) * math.exp(-(rate + cfg["credit_spread"]) * T)
    ax1[0, 0].plot(spots, cfg["conversion_ratio"] * spots, "k:", label="parity (ratio x spot)")
    ax1[0, 0].axhline(floor, color="grey", linestyle="--", linewidth=0.8,
                      label="bond floor at the paid spread")
    ax1[0, 0].axvline(spot, color="grey", linewidth=0.5)
    ax1[0, 0].set_xlabel("share price ($)")
    ax1[0, 0].set_ylabel("convertible value ($ per bond)")
    ax1[0, 0].set_title("price: bond floor + conversion option", fontsize=10)
    ax1[0, 0].legend(fontsize=7)
    for k, d in deltas.items():
        ax1[0, 1].plot(spots[::4], d, label=k)
    ax1[0, 1].set_xlabel("share price ($)")
    ax1[0, 1].set_ylabel("delta (shares per bond, shorted as the hedge)")
    ax1[0, 1].set_title("hedge ratio (autodiff delta)", fontsize=10)
    ax1[0, 1].legend(fontsize=7)

    # Figure 2: gamma P&L, the default tail, frequency and costs
    fig2, ax2 = figure(ncols=3, size=(15.0, 4.6))
    fig2.suptitle(f"Long 1 convertible, short its delta: {n:,} paths, {grid.n_steps} trading "
                  f"days", fontsize=11)
    vols = np.array([v for v, _, _ in vol_curve])
    ax2[0, 0].errorbar(vols * 100, [m for _, m, _ in vol_curve],
                       yerr=[2 * e for _, _, e in vol_curve], fmt="o", capsize=3,
                       label="Monte Carlo mean (+/- 2 SE)")
    dense = np.linspace(vols.min(), vols.max(), 41)
    ax2[0, 0].plot(dense * 100, [theory(hj.BlackScholes(spot, float(v), rate, div), riskless)
                                 for v in dense], label="theory (V(realised) - paid) e^{rT}")
    ax2[0, 0].axvline(vol_i * 100, color="grey", linestyle=":", label="implied vol")
    ax2[0, 0].axhline(0.0, color="k", linewidth=0.5)
    ax2[0, 0].set_xlabel("realised vol (% a year)")
    ax2[0, 0].set_ylabel("mean P&L at T ($ per bond)")
    ax2[0, 0].set_title("gamma P&L + credit carry, daily hedge", fontsize=10)
    ax2[0, 0].legend(fontsize=7)
    lo = min(np.percentile(a, 0.05) for a in pnl_samples.values())
    hi = max(np.percentile(a, 99.95) for a in pnl_samples.values())
    edges = np.linspace(lo, hi, 100)
    for k, a in pnl_samples.items():
        ax2[0, 1].hist(a[(a >= lo) & (a <= hi)], bins=edges, histtype="step", log=True, label=k)
    ax2[0, 1].set_xlabel("P&L at T ($ per bond; < 0 a loss; outer 0.05% not drawn)")
    ax2[0, 1].set_ylabel(f"paths per bin (of {n:,}, log scale)")
    ax2[0, 1].set_title("the default tail", fontsize=10)
    ax2[0, 1].legend(fontsize=7)
    days = [d for d, _ in freq_rows]
    x = np.arange(len(days))
    ax2[0, 2].bar(x - 0.2, [r["std_pnl"] for _, r in freq_rows], 0.4, label="P&L std")
    ax2[0, 2].bar(x + 0.2, [r["mean_cost"] for _, r in freq_rows], 0.4,
                  label=f"mean cost ({cfg['cost_rate']:.2%} of traded value)")
    ax2[0, 2].set_xticks(x, [_interval(d) for d in days])
    ax2[0, 2].set_xlabel("rebalancing interval (trading days)")
    ax2[0, 2].set_ylabel("$ per bond at T")
    ax2[0, 2].set_title("hedging frequency vs costs", fontsize=10)
    ax2[0, 2].legend(fontsize=7)

    for r in table:
        r["scenario"] = r.pop("strategy")
    table = [{"scenario": r["scenario"], **{k: v for k, v in r.items() if k != "scenario"}}
             for r in table]
    return Outcome(
        table=table, findings=findings,
        title="convertible arbitrage: long the bond, short its delta",
        caption=(f"One convertible bought at {v_paid:.3f} (Tsiveriotis-Fernandes, "
                 f"{cfg['credit_spread']:.1%} spread, {vol_i:.0%} implied vol), short its "
                 f"delta in shares; {n:,} paths per row, risk-neutral worlds. $ per bond at "
                 f"T; P&L > 0 is a gain; VaR and ES are positive losses at {alpha:.0%}; "
                 "theory = (world value - price paid) e^{rT}, the exact mean."),
        headers={"scenario": "scenario", "theory_mean": "theory mean ($)",
                 "mean_pnl": "mean P&L ($)", "stderr": "std error ($)"},
        display=["scenario", "mean_pnl", "stderr", "theory_mean", "std_pnl", es_key,
                 "mean_cost"],
        results={"price_paid": v_paid, "delta": delta, "gamma": gamma, "carry_per_year": carry,
                 "credit_carry_per_year": credit_carry, "spread_widening_loss": widening_loss,
                 "default_loss_t0_hedged": jump_loss_hedged,
                 "default_loss_t0_unhedged": jump_loss_unhedged,
                 "p_default": p_default, "loss_given_default_hedged": loss_given_default,
                 "loss_given_default_unhedged": loss_given_default_unhedged,
                 "n_steps": grid.n_steps},
        figures={"convertible_profile": fig1, "convertible_pnl": fig2})
