"""market-maker: the textbook desk example, measured.

A market maker is long 10,000 calls with delta 0.6 and delta-hedges them twice a day for 20
trading days, paying $50 per trade. The experiment shows the hedge trades along a path where
spot rises (delta goes up, so it sells more shares), the commission bill (40 rebalances x $50
when every rebalance trades), the hedged against the unhedged P&L distribution, and what a
no-trade band would have saved in commissions for how much more risk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import figure, histograms, stats_row
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "market-maker"
QUESTION = ("A desk is long 10,000 calls (delta 0.6), delta-hedged twice a day for 20 days at "
            "$50 a trade: what do the trades, the commission and the residual risk look like, "
            "and what would a no-trade band save?")
BOUNDS = {"contracts": Positive(), "delta": Between(0.0, 1.0), "option_maturity": Positive(),
          "spot": Positive(), "vol": Positive(), "days": AtLeast(1), "per_day": AtLeast(1),
          "commission": NonNegative(), "bands": Positive()}


def desk_book(model, cfg: dict):
    """The market-maker's book from its config: (strike, the call, the hedging grid of
    `days` trading days at `per_day` rebalances). The strike gives the call the config's
    `delta` under `model`."""
    import hedgejax as hj

    strike = strike_for_delta(model, cfg["option_maturity"], cfg["delta"])
    call = hj.EuropeanCall(strike, cfg["option_maturity"])
    horizon = cfg["days"] / 252
    if horizon > cfg["option_maturity"]:
        raise ValueError(f"config key 'days' must be at most option_maturity x 252 = "
                         f"{cfg['option_maturity'] * 252:g}, got {cfg['days']}")
    return strike, call, hj.TimeGrid(horizon, cfg["days"] * cfg["per_day"])


def strike_for_delta(model, maturity: float, delta: float) -> float:
    """The strike whose call has the given Black-Scholes delta (bisection on the autodiff
    delta, which falls as the strike rises)."""
    import hedgejax as hj

    lo, hi = model.spot * 1e-3, model.spot * 1e3
    lo, hi = float(lo), float(hi)
    for _ in range(80):
        mid = (lo * hi) ** 0.5
        if float(hj.greeks(model, hj.EuropeanCall(mid, maturity)).delta) > delta:
            lo = mid
        else:
            hi = mid
    return (lo * hi) ** 0.5


def _sample_path(model, call, contracts, grid, key) -> list[dict[str, Any]]:
    """Spot, delta and hedge trades along the simulated path whose spot rises the most
    (independently of `hedge()`: deltas from `jax.grad` of the price at each observed spot)."""
    import jax
    import jax.numpy as jnp

    import hedgejax as hj

    paths = np.asarray(hj.simulate(model, grid, 200, key))
    path = paths[np.argmax(paths[:, -1])]
    times = np.arange(grid.n_steps) * grid.maturity / grid.n_steps

    def delta_at(s, t):
        return jax.grad(lambda x: hj.price(model, call, spot=x, t=t))(s)

    deltas = np.asarray(jax.vmap(delta_at)(jnp.asarray(path[:-1]), jnp.asarray(times)))
    rows, position = [], 0.0
    for i, (s, d) in enumerate(zip(path[:-1], deltas, strict=True)):
        target = -contracts * float(d)
        rows.append({"step": i, "day": round(float(times[i]) * 252, 2), "spot": float(s),
                     "call_delta": float(d), "shares_held": target,
                     "trade": target - position})
        position = target
    return rows


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax

    import hedgejax as hj

    model = hj.BlackScholes(cfg["spot"], cfg["vol"], cfg["rate"])
    strike, call, grid = desk_book(model, cfg)
    horizon = grid.maturity
    book = hj.Book([call], quantities=[cfg["contracts"]])
    costs = hj.Fixed(cfg["commission"])
    key, n = ctx.key, cfg["paths"]

    strategies = [("unhedged", hj.NoHedge()), (f"delta x{cfg['per_day']}/day", hj.DeltaHedge())]
    strategies += [(f"band +/-{w:g} sh", hj.BandHedge(w)) for w in cfg["bands"]]
    table, results = [], {}
    for label, strategy in ctx.track(strategies, "hedging"):
        res = hj.hedge(model, book, strategy, costs, grid, n, key)
        table.append(stats_row(label, res))
        results[label] = res
    base = table[1]
    # Against hedging at every rebalance: what each band saves and what it adds to the risk.
    # The unhedged row pays no commission and is not a hedge: no value (None), not 0.
    for row in table:
        hedged = row is not table[0]
        row["commission_saved"] = base["mean_cost"] - row["mean_cost"] if hedged else None
        row["std_increase"] = row["std_pnl"] - base["std_pnl"] if hedged else None

    trades = _sample_path(model, call, cfg["contracts"], grid, jax.random.fold_in(key, 1))
    n_rebalances = grid.n_steps
    # the widest band whose P&L std stays within 10% of hedging at every rebalance
    close = [r for r in table[2:] if r["std_pnl"] <= 1.1 * base["std_pnl"]]
    best_band = max(close, key=lambda r: r["commission_saved"]) if close else None
    findings = [
        f"Strike {strike:.2f} gives delta {cfg['delta']:g}: the initial hedge sells "
        f"{cfg['contracts'] * cfg['delta']:,.0f} shares.",
        f"Along the path where spot rises most ({trades[0]['spot']:.2f} to "
        f"{trades[-1]['spot']:.2f}), the call delta goes from {trades[0]['call_delta']:.3f} to "
        f"{trades[-1]['call_delta']:.3f} and the hedge is short "
        f"{-trades[-1]['shares_held']:,.0f} shares.",
        f"Hedging {cfg['per_day']} times a day trades {base['mean_trades']:.1f} times on "
        f"average (of {n_rebalances} rebalances): ${base['mean_cost']:,.0f} of commission "
        f"against {n_rebalances} x ${cfg['commission']:g} = "
        f"${n_rebalances * cfg['commission']:,.0f} if every rebalance trades.",
        f"Hedging cuts the P&L std from {table[0]['std_pnl']:,.0f} to {base['std_pnl']:,.0f} "
        f"and the 99% ES from {table[0]['es_0.99']:,.0f} to {base['es_0.99']:,.0f}.",
    ]
    if best_band is not None:
        findings.append(
            f"The widest band within 10% of that std, {best_band['strategy']}, saves "
            f"${best_band['commission_saved']:,.0f} of commission a book "
            f"({best_band['commission_saved'] / base['mean_cost']:.0%}) for "
            f"{best_band['std_increase']:+,.0f} of P&L std.")
    book_text = (f"Long {cfg['contracts']:,.0f} calls (strike {strike:,.2f}, delta "
                 f"{cfg['delta']:g}, {cfg['option_maturity']:g} years)")
    caption = (f"{book_text}, hedged with shares for {cfg['days']} trading days "
               f"({n_rebalances} rebalances) at ${cfg['commission']:g} a trade; {n:,} paths. "
               f"Money in $ per book at day {cfg['days']}; P&L > 0 is a gain; 99% VaR and ES "
               f"are positive losses. Saved: commission saved, std added: P&L std added, "
               f"against {base['strategy']} (hedging at all {n_rebalances} rebalances); the "
               f"unhedged row pays no commission (—). Bands are half-widths in shares.")
    figures = _figures(cfg, table, results, trades, strike)
    return Outcome(
        table=table, findings=findings, title="hedged vs unhedged, and what bands save",
        caption=caption,
        headers={"mean_cost": "commission ($)", "mean_trades": "trades per path",
                 "commission_saved": "saved ($)", "std_increase": "std added ($)"},
        display=["strategy", "mean_pnl", "std_pnl", "es_0.99", "mean_cost", "mean_trades",
                 "commission_saved", "std_increase"],
        results={"strike": strike, "horizon_years": horizon, "rebalances": n_rebalances,
                 "sample_path_trades": trades},
        figures=figures)


def _figures(cfg, table, results, trades, strike) -> dict[str, Any]:
    """pnl_hist (unhedged vs hedged; the hedges on their own x range), sample_path (spot, the
    hedge and a band around its target, the trades) and bands (what each band saves and
    adds)."""
    base, bands = table[1], table[2:]
    contracts, days = cfg["contracts"], cfg["days"]
    fig_pnl, ax = figure(ncols=2, size=(11.5, 4.3))
    histograms(ax[0, 0], {"unhedged": results["unhedged"].pnl,
                          base["strategy"]: results[base["strategy"]].pnl},
               xlabel=f"P&L at day {days} ($)")
    ax[0, 0].set_title(f"{contracts:,.0f} long calls: unhedged vs delta hedged", fontsize=10)
    import matplotlib.pyplot as plt

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ax[0, 1].set_prop_cycle(color=colors[1:])   # the delta hedge keeps its colour
    histograms(ax[0, 1], {r["strategy"]: results[r["strategy"]].pnl for r in table[1:]},
               xlabel=f"P&L at day {days} ($)")
    ax[0, 1].set_title("the hedges alone, on their own P&L range", fontsize=10)
    for a in ax[0]:
        a.tick_params(axis="x", labelrotation=30)

    per_day = cfg["per_day"]
    days_axis = np.array([r["step"] for r in trades]) / per_day
    band_widths = [float(w) for w in cfg["bands"]]   # table[2:] in this order
    # on the path, the band that saves closest to half the commission on average
    band_i = (min(range(len(bands)),
                  key=lambda i: abs(bands[i]["commission_saved"] / base["mean_cost"] - 0.5))
              if bands and base["mean_cost"] > 0 else None)
    fig_path, axes = figure(ncols=3, size=(15.0, 4.2))
    axes[0, 0].plot(days_axis, [r["spot"] for r in trades], color="tab:blue")
    axes[0, 0].axhline(cfg["spot"], color="k", linewidth=0.5)
    axes[0, 0].set_xlabel("trading day")
    axes[0, 0].set_ylabel("spot ($)")
    axes[0, 0].set_title("the simulated path (of 200) where spot rises most", fontsize=10)
    target = np.array([r["shares_held"] for r in trades])
    axes[0, 1].step(days_axis, target, where="post", color="tab:orange",
                    label=f"delta hedge ({per_day} rebalances a day)")
    if band_i is not None:
        width = band_widths[band_i]
        held, position = [], 0.0
        for t in target:
            position = float(np.clip(position, t - width, t + width))
            held.append(position)
        axes[0, 1].fill_between(days_axis, target - width, target + width, step="post",
                                color="tab:green", alpha=0.15,
                                label=f"no-trade band +/-{width:,.0f} shares")
        axes[0, 1].step(days_axis, held, where="post", color="tab:green",
                        label="band hedge (trades to the band's edge)")
    axes[0, 1].set_xlabel("trading day")
    axes[0, 1].set_ylabel("shares held (< 0: short)")
    axes[0, 1].set_title("hedge position on that path", fontsize=10)
    axes[0, 1].legend(fontsize=8)
    axes[0, 2].bar(days_axis[1:], [r["trade"] for r in trades[1:]], width=0.8 / per_day,
                   color="tab:red")
    axes[0, 2].axhline(0.0, color="k", linewidth=0.5)
    axes[0, 2].set_xlabel("trading day")
    axes[0, 2].set_ylabel("shares traded (< 0: sold)")
    axes[0, 2].set_title(f"delta hedge trades after the first (sold {-trades[0]['trade']:,.0f} "
                         "at day 0)", fontsize=10)

    fig_bands, bax = figure(size=(6.5, 4.3))
    widths = [0.0] + band_widths
    saved = [0.0] + [r["commission_saved"] for r in bands]
    added = [0.0] + [r["std_increase"] for r in bands]
    bax[0, 0].plot(widths, saved, "o-", color="tab:green", label="commission saved ($)")
    bax[0, 0].plot(widths, added, "s-", color="tab:red", label="P&L std added ($)")
    bax[0, 0].axhline(base["mean_cost"], color="tab:green", linestyle=":", linewidth=1,
                      label=f"all the commission (${base['mean_cost']:,.0f})")
    bax[0, 0].set_xlabel("no-trade band half-width (shares; 0 = delta hedge)")
    bax[0, 0].set_ylabel("$ per book")
    bax[0, 0].set_title(f"what a band saves and costs in risk, vs {base['strategy']}",
                        fontsize=10)
    bax[0, 0].legend(fontsize=8)
    bax[0, 0].grid(alpha=0.3)
    return {"pnl_hist": fig_pnl, "sample_path": fig_path, "bands": fig_bands}
