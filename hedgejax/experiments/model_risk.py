"""model-risk: delta-hedging with the wrong volatility, and with the wrong model.

Conventions (docs/architecture.md): the user holds one call (strike `strike`, maturity
`maturity` years), bought at t0 at the HEDGE model's price V0 and financed at `rate`; the
hedge is -delta shares of the hedge model, rebalanced at every step of the grid; P&L is in
time-T money, > 0 a gain to the holder. No transaction costs: what is measured is the model
error alone.

Part 1, the wrong volatility. The world is Black-Scholes at `true_vol`; the hedger uses
Black-Scholes at each of `hedge_vols` (`hedge(..., hedge_model=BlackScholes(..., vol=h))`).
Two references:

- The mean, exactly. The hedge gains sum_i h_i (S_{i+1} - S_i e^{r dt}) have zero mean in a
  risk-neutral world whatever the h_i, so E[P&L] = e^{rT} (V(true_vol) - V(hedge_vol)): the
  holder gains what the option is worth above the price paid. Hedging at a vol below the
  true one buys the option cheap and earns on average; above, it loses.
- Path by path, the gamma P&L. With V_h the hedge model's price, Ito and its pricing PDE
  give P&L = int e^{r(T-t)} 1/2 Gamma_h S^2 (sigma_realised^2 - sigma_h^2) dt: the holder
  earns half the hedge model's dollar gamma times the excess of realised over hedged
  variance. Its discrete version on the simulated paths (`hj.simulate`, the very paths
  `hedge()` sees),

      sum_i e^{r(T - t_{i+1})} 1/2 Gamma_h(t_i, S_i) [dS_i^2 - sigma_h^2 S_i^2 dt],
      dS_i = S_{i+1} - S_i e^{r dt},

  with Gamma_h the closed-form Black-Scholes gamma at the hedge vol (NumPy, independent of
  the library's autodiff), is compared with the measured P&L, path by path: its mean, and
  the RMS of the difference (third-order terms of the Taylor expansion).

Part 2, the wrong model. The world is Heston (`heston_*`; the defaults are the Heston world
of workload W4 in docs/architecture.md, whose Feller condition fails: variance can touch
zero, which is allowed and warned about; the warning is silenced here because it is
expected). The same call is hedged
(over `heston_steps` steps: the Heston hedger prices by a Fourier integral per path and step,
slow on a CPU) three ways:

- Black-Scholes deltas at the call's Black-Scholes implied volatility (so V0 is the Heston
  price: only the deltas differ). Its gamma P&L applies with the realised variance of the
  Heston path.
- Heston deltas, conditioned on each path's current variance (the model's own hedge).
- Heston minimum-variance deltas: h = -(V_S + rho xi V_v / S), which also hedges the part
  of the variance move that is correlated with the spot (V_v = dV/dv, `obs.vega` of a Heston
  hedge model). Both Heston rows use one strategy class (`_VarianceAdjustedDelta`, weight 0
  is exactly `DeltaHedge`) so they share one compilation.

The mean reference of every row is e^{rT} (V_world - V0), exact for any strategy in a
risk-neutral world (the Heston world's V_world is its Fourier price; the QE scheme is a
martingale, and its weak error is small).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np

from ._common import figure, histograms, plural, stats_row
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "model-risk"
QUESTION = ("What does hedging with the wrong volatility, or with the wrong model, do to the "
            "mean and the spread of a delta-hedged option's P&L?")
BOUNDS = {"spot": Positive(), "strike": Positive(), "maturity": Positive(),
          "rate": Between(-1.0, 1.0), "steps": AtLeast(1), "true_vol": Positive(),
          "hedge_vols": Positive(), "heston_v0": NonNegative(), "heston_kappa": Positive(),
          "heston_theta": NonNegative(), "heston_xi": Positive(),
          "heston_rho": Between(-1.0, 1.0, closed=True), "heston_steps": AtLeast(1)}


# ---------------------------------------------------------------------------------------
# Black-Scholes in NumPy (independent of the library): price for implied vols, gamma for
# the gamma P&L
# ---------------------------------------------------------------------------------------


def bs_call(spot: float, strike: float, tau: float, vol: float, rate: float) -> float:
    """Black-Scholes call price (scalar, float64)."""
    sd = vol * math.sqrt(tau)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * tau) / sd
    cdf = lambda x: 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))  # noqa: E731
    return spot * cdf(d1) - strike * math.exp(-rate * tau) * cdf(d1 - sd)


def implied_vol(price: float, spot: float, strike: float, tau: float, rate: float) -> float:
    """The Black-Scholes volatility of a call price (bisection on [1e-4, 5])."""
    lo, hi = 1e-4, 5.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if bs_call(spot, strike, tau, mid, rate) < price:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def bs_gamma(spot: np.ndarray, strike: float, tau: np.ndarray, vol: float,
             rate: float) -> np.ndarray:
    """Black-Scholes gamma of a call or put (per unit spot^2), elementwise; tau > 0."""
    sd = vol * np.sqrt(tau)
    d1 = (np.log(spot / strike) + (rate + 0.5 * vol * vol) * tau) / sd
    return np.exp(-0.5 * d1 * d1) / (math.sqrt(2.0 * math.pi) * spot * sd)


def gamma_pnl(paths: np.ndarray, strike: float, maturity: float, horizon: float, vol: float,
              rate: float, quantity: float = 1.0) -> np.ndarray:
    """Per-path gamma P&L of `quantity` options (maturity `maturity`) delta-hedged at `vol`
    on `paths` (shape (n, steps + 1), uniform grid over `horizon` years), in time-T money:
    sum_i e^{r(T - t_{i+1})} 1/2 Gamma(t_i, S_i) [(S_{i+1} - S_i e^{r dt})^2 - vol^2 S_i^2 dt].
    """
    paths = np.asarray(paths, dtype=np.float64)
    n_steps = paths.shape[1] - 1
    dt = horizon / n_steps
    t = np.arange(n_steps) * dt
    s, s_next = paths[:, :-1], paths[:, 1:]
    g = bs_gamma(s, strike, maturity - t, vol, rate)
    move = s_next - s * math.exp(rate * dt)
    accrue = np.exp(rate * (horizon - t - dt))
    return quantity * np.sum(accrue * 0.5 * g * (move * move - vol * vol * s * s * dt), axis=1)


# ---------------------------------------------------------------------------------------
# The minimum-variance delta under Heston
# ---------------------------------------------------------------------------------------


@functools.cache
def _variance_adjusted_delta():
    """The strategy class (made on first use: hedgejax is imported lazily)."""
    import jax

    import hedgejax as hj

    class _VarianceAdjustedDelta(hj.AbstractStrategy):
        """h = -(delta + weight rho xi vega / S) with a Heston hedge model (vega = dV/dv):
        weight 0 is `DeltaHedge()`, weight 1 the minimum-variance delta, which also offsets
        the variance move correlated with the spot (d<S, v> = rho xi v S dt)."""

        weight: jax.Array
        rho_xi: jax.Array

        def __call__(self, obs, position):
            return -(obs.delta + self.weight * self.rho_xi * obs.vega / obs.spot)

    return _VarianceAdjustedDelta


# ---------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------


def _pct(vol: float) -> str:
    """A volatility as a percentage with the digits it has (0.125 -> 12.5%)."""
    return f"{100 * vol:.4g}%"


HEADERS = {
    "world": "world",
    "hedge_vol": "hedge vol (annual; 0.2 = 20%)",
    "v0_paid": "price paid V0 ($)",
    "theory_mean": "theory: mean P&L ($)",
    "z_vs_theory": "(mean - theory) / std error",
    "gamma_pnl_mean": "gamma P&L mean ($)",
    "gamma_pnl_rms_gap": "RMS of P&L - gamma P&L ($)",
}


def _row(world: str, label: str, res, theory: float, gamma: np.ndarray | None,
         hedge_vol: float | None) -> dict[str, Any]:
    row = stats_row(label, res)
    pnl = np.asarray(res.pnl, dtype=np.float64)
    row = {"world": world, **row}
    row["hedge_vol"] = hedge_vol
    row["v0_paid"] = float(res.initial_price)
    # float32 prices: differences below 1e-5 are rounding, not model
    row["theory_mean"] = round(theory, 5) + 0.0
    row["z_vs_theory"] = (row["mean_pnl"] - theory) / row["stderr"] if row["stderr"] > 0 \
        else 0.0
    if gamma is None:
        row["gamma_pnl_mean"] = None
        row["gamma_pnl_rms_gap"] = None
    else:
        row["gamma_pnl_mean"] = float(np.mean(gamma))
        row["gamma_pnl_rms_gap"] = float(np.sqrt(np.mean((pnl - gamma) ** 2)))
    return row


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax
    import jax.numpy as jnp

    import hedgejax as hj

    spot, strike, rate = cfg["spot"], cfg["strike"], cfg["rate"]
    # float32-representable, so the option's (float32) expiry falls exactly on the grid's end
    maturity = float(np.float32(cfg["maturity"]))
    n, key = cfg["paths"], ctx.key
    call = hj.EuropeanCall(strike, maturity)
    growth = math.exp(rate * maturity)

    # Part 1: Black-Scholes world at true_vol, hedged at each hedge vol.
    world = hj.BlackScholes(spot, cfg["true_vol"], rate)
    grid = hj.TimeGrid(maturity, cfg["steps"])
    k_bs = jax.random.fold_in(key, 1)
    paths = np.asarray(hj.simulate(world, grid, n, k_bs))
    v_true = bs_call(spot, strike, maturity, cfg["true_vol"], rate)
    table, samples = [], {}
    for vol in ctx.track(cfg["hedge_vols"], "hedging at each vol"):
        res = hj.hedge(world, call, hj.DeltaHedge(), None, grid, n, k_bs,
                       hedge_model=hj.BlackScholes(spot, vol, rate))
        theory = growth * (v_true - bs_call(spot, strike, maturity, vol, rate))
        gamma = gamma_pnl(paths, strike, maturity, maturity, vol, rate)
        label = f"BS delta @ {_pct(vol)}"
        table.append(_row(f"BS {cfg['true_vol']:.0%}", label, res, theory, gamma, vol))
        samples[label] = res.pnl

    # Part 2: Heston world; Black-Scholes deltas at the implied vol vs Heston's own deltas.
    with warnings.catch_warnings():
        # The W4 parameters fail Feller on purpose (variance touches zero); that is allowed.
        warnings.simplefilter("ignore", hj.FellerWarning)
        heston = hj.Heston(spot=spot, v0=cfg["heston_v0"], kappa=cfg["heston_kappa"],
                           theta=cfg["heston_theta"], xi=cfg["heston_xi"],
                           rho=cfg["heston_rho"], rate=rate)
    feller = 2 * cfg["heston_kappa"] * cfg["heston_theta"] >= cfg["heston_xi"] ** 2
    v_heston = float(hj.price(heston, call))
    iv = implied_vol(v_heston, spot, strike, maturity, rate)
    g_heston = hj.greeks(heston, call)
    deltas_t0 = {"heston": float(g_heston.delta),
                 "black_scholes_implied": float(hj.greeks(hj.BlackScholes(spot, iv, rate),
                                                          call).delta),
                 "minimum_variance": float(g_heston.delta) + cfg["heston_rho"]
                 * cfg["heston_xi"] * float(g_heston.vega) / spot}
    h_grid = hj.TimeGrid(maturity, cfg["heston_steps"])
    k_h = jax.random.fold_in(key, 2)
    h_paths = np.asarray(hj.simulate(heston, h_grid, n, k_h))
    adjusted = _variance_adjusted_delta()
    rho_xi = cfg["heston_rho"] * cfg["heston_xi"]
    heston_label = "Heston"
    h_samples = {}
    runs = [(f"BS delta @ implied {iv:.2%}", hj.DeltaHedge(), hj.BlackScholes(spot, iv, rate)),
            ("Heston delta", adjusted(jnp.asarray(0.0), jnp.asarray(rho_xi)), None),
            ("Heston min-variance delta", adjusted(jnp.asarray(1.0), jnp.asarray(rho_xi)), None)]
    for label, strategy, hedge_model in ctx.track(runs, "hedging in the Heston world"):
        res = hj.hedge(heston, call, strategy, None, h_grid, n, k_h, hedge_model=hedge_model)
        theory = growth * (v_heston - float(res.initial_price))
        is_bs = hedge_model is not None
        gamma = gamma_pnl(h_paths, strike, maturity, maturity, iv, rate) if is_bs else None
        table.append(_row(heston_label, label, res, theory, gamma, iv if is_bs else None))
        h_samples[label] = res.pnl

    # Theory curve of the mean P&L against the hedge vol (for the figure).
    lo, hi = min(cfg["hedge_vols"]), max(cfg["hedge_vols"])
    curve_vols = np.linspace(0.8 * lo, 1.1 * hi, 60)
    curve = [growth * (v_true - bs_call(spot, strike, maturity, v, rate)) for v in curve_vols]

    from matplotlib.ticker import PercentFormatter

    fig, ax = figure(ncols=3, size=(17.0, 4.8))
    fig.suptitle(f"One long call (strike {strike:g}, spot {spot:g}, {maturity:g} years) "
                 f"bought at the hedge model's price and delta-hedged: {n:,} paths",
                 fontsize=11)
    histograms(ax[0, 0], samples, xlabel="P&L per call at T ($)")
    ax[0, 0].set_title(f"Black-Scholes world at {cfg['true_vol']:.0%}, hedged at each vol",
                       fontsize=10)
    bs_rows = table[:len(cfg["hedge_vols"])]
    ax[0, 1].plot(curve_vols, curve, color="k", lw=1,
                  label=r"theory $e^{rT}$ (V(true) - V(hedge))")
    ax[0, 1].errorbar([r["hedge_vol"] for r in bs_rows], [r["mean_pnl"] for r in bs_rows],
                      yerr=[2 * r["stderr"] for r in bs_rows], fmt="o", color="tab:red",
                      capsize=3, label="measured mean +/- 2 SE")
    ax[0, 1].plot([r["hedge_vol"] for r in bs_rows], [r["gamma_pnl_mean"] for r in bs_rows],
                  "x", color="tab:blue", markersize=10, zorder=4, label="gamma P&L on the paths")
    ax[0, 1].axvline(cfg["true_vol"], color="grey", ls=":", lw=1)
    ax[0, 1].axhline(0.0, color="grey", lw=0.5)
    ax[0, 1].xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax[0, 1].set_xlabel("hedge vol (annual)")
    ax[0, 1].set_ylabel("mean P&L per call at T ($)")
    ax[0, 1].set_title(f"mean P&L against the hedge vol (true vol {cfg['true_vol']:.0%}, "
                       "dotted)", fontsize=10)
    ax[0, 1].legend(fontsize=8)
    histograms(ax[0, 2], h_samples, xlabel="P&L per call at T ($)")
    ax[0, 2].set_title(f"Heston world (v0 {cfg['heston_v0']:g}, xi {cfg['heston_xi']:g}, "
                       f"rho {cfg['heston_rho']:g}), hedged with each delta", fontsize=10)

    low = min(bs_rows, key=lambda r: r["hedge_vol"])
    high = max(bs_rows, key=lambda r: r["hedge_vol"])
    right = min(bs_rows, key=lambda r: abs(r["hedge_vol"] - cfg["true_vol"]))
    worst_z = max(abs(r["z_vs_theory"]) for r in bs_rows)
    bs_h, h_delta, h_mv = table[len(bs_rows):]
    findings = [
        f"Black-Scholes world at {cfg['true_vol']:.0%}, {cfg['steps']} rebalances: hedging "
        f"at {low['hedge_vol']:.0%} pays V0 = {low['v0_paid']:.3f} and earns "
        f"{low['mean_pnl']:+.3f} +/- {low['stderr']:.3f} on average (theory "
        f"{low['theory_mean']:+.3f}); hedging at {high['hedge_vol']:.0%} pays "
        f"{high['v0_paid']:.3f} and earns {high['mean_pnl']:+.3f} +/- {high['stderr']:.3f} "
        f"(theory {high['theory_mean']:+.3f}). Every measured mean is within "
        f"{worst_z:.1f} standard errors of e^(rT) (V(true vol) - V(hedge vol)).",
        f"The wrong vol also widens the spread: P&L std {low['std_pnl']:.3f} at "
        f"{low['hedge_vol']:.0%}, {right['std_pnl']:.3f} at {right['hedge_vol']:.0%}, "
        f"{high['std_pnl']:.3f} at {high['hedge_vol']:.0%}.",
        f"The gamma P&L 1/2 Gamma_h S^2 (realised - hedged variance), summed on the same "
        f"paths, predicts each path's P&L: its mean at {low['hedge_vol']:.0%} is "
        f"{low['gamma_pnl_mean']:+.3f} (measured {low['mean_pnl']:+.3f}), and the RMS gap "
        f"per path is {low['gamma_pnl_rms_gap']:.3f} against a P&L std of "
        f"{low['std_pnl']:.3f}.",
        f"Heston world ({'Feller holds' if feller else 'Feller fails'}; call price "
        f"{v_heston:.3f}, implied vol {iv:.2%}), {cfg['heston_steps']} rebalances: P&L std "
        f"{bs_h['std_pnl']:.3f} with Black-Scholes deltas at the implied vol, "
        f"{h_delta['std_pnl']:.3f} with Heston deltas, {h_mv['std_pnl']:.3f} with Heston "
        f"minimum-variance deltas; 99% ES {bs_h['es_0.99']:.3f}, {h_delta['es_0.99']:.3f}, "
        f"{h_mv['es_0.99']:.3f}.",
        f"Means in the Heston world: {bs_h['mean_pnl']:+.3f}, {h_delta['mean_pnl']:+.3f}, "
        f"{h_mv['mean_pnl']:+.3f} (+/- {h_delta['stderr']:.3f}) against 0 in theory (V0 is "
        f"the Heston price in all three): the wrong model costs spread, not mean, when the "
        f"premium is right.",
    ]
    findings.append(
        f"At t0 the deltas are {deltas_t0['heston']:.4f} (Heston), "
        f"{deltas_t0['black_scholes_implied']:.4f} (Black-Scholes at the implied vol) and "
        f"{deltas_t0['minimum_variance']:.4f} (minimum variance: with rho = "
        f"{cfg['heston_rho']:g} the variance rises as the spot falls, which the Heston "
        f"delta ignores). Black-Scholes deltas leave "
        f"{1 - bs_h['std_pnl'] / h_delta['std_pnl']:.0%} less P&L std than Heston's own, "
        f"minimum-variance deltas {1 - h_mv['std_pnl'] / h_delta['std_pnl']:.0%}.")
    return Outcome(
        table=table, findings=findings,
        title="delta-hedging with the wrong vol and the wrong model",
        caption=(f"The book: one long call (strike {strike:g}, spot {spot:g}, "
                 f"{plural(maturity, 'year')}), bought at the hedge model's price V0 and "
                 f"delta-hedged with shares to expiry, no costs; {n:,} paths per row. Money in "
                 f"$ at T per call; P&L > 0 is a gain; VaR and ES are positive losses at 99% "
                 f"(negative: even the worst 1% of paths gain)."),
        headers=HEADERS,
        # the terminal: mean against theory and the spread (80 columns); the files keep all
        display=["world", "strategy", "v0_paid", "mean_pnl", "stderr", "theory_mean",
                 "std_pnl", "es_0.99"],
        results={"true_price": v_true, "heston_price": v_heston, "heston_implied_vol": iv,
                 "feller_condition_holds": feller, "heston_t0_deltas": deltas_t0,
                 "theory_curve": {"hedge_vol": curve_vols, "mean_pnl": curve}},
        figures={"pnl_model_risk": fig})
