"""historical: the hedges along a price history instead of a model's paths.

Data: one daily price series, by default the sample shipped with hedgejax
(`hj.data.sample_prices()`: SYNTHETIC, not market prices: three years of a geometric
Brownian motion at 18% vol and 7% drift with a -15% crash followed by 40 days at 40% vol,
and a +9% jump; see `hedgejax/data/__init__.py`). `prices_csv` names a CSV file of your own
instead (a `date` column and a price column, read by `hj.load_prices_csv`); nothing is
downloaded.

The book: one call, strike `moneyness` x spot, maturity `window` trading days
(T = window / 252 years), hedged to expiry on a daily grid (one grid step per data step),
bought at the hedge model's price V0 and financed at `rate` (conventions of
docs/architecture.md; P&L in time-T money, > 0 a gain to the holder). The hedge model is
Black-Scholes at the volatility estimated from the data: the standard deviation of all the
series' daily log-returns, annualised with sqrt(252) (in-sample: the hedger knows the whole
history's volatility, crash included, which flatters it; it does not know when the volatility
comes).

Strategies: no hedge (the book alone on the same paths), delta-hedged daily, delta-hedged
every `weekly_every` days (weekly), and a no-trade band of +/-`band_width` shares around
-delta; shares cost `cost_rate` of the traded value.

Worlds:

- windows: `HistoricalPaths.from_windows`: the hedge started on every
  `stride`-th day, each window rescaled to start at `spot` (returns unchanged). Windows
  overlap, so they are far from independent: there are only about n_returns / window
  non-overlapping ones. The standard errors of the windows' means respect the overlap
  (`overlap_stderr`: a heteroskedasticity and autocorrelation consistent (HAC) estimate
  with the truncated kernel of Hansen and Hodrick (1980) over the lag = (window - 1) //
  stride window starts that share returns); an i.i.d. formula would be about
  sqrt(window / stride) times too small;
- bootstrap: `Bootstrap.from_prices` with blocks of `block` days (keeps volatility
  clustering within a block), `paths` resampled paths;
- BS reference: a geometric Brownian motion at the estimated vol and drift
  (the world the hedger believes in), `paths` paths.

Reference, path by path: for the daily delta hedge, the gamma P&L
sum_i 1/2 Gamma(t_i, S_i) [(S_{i+1} - S_i e^{r dt})^2 - sigma^2 S_i^2 dt] (accrued to T) on
the same paths (`hj.simulate`, the paths `hedge()` sees) explains the P&L: the hedge earns
when the realised variance exceeds the hedge vol's and loses when it falls short.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ._common import figure, histograms, stats_row, unhedged_result
from ._framework import (
    AtLeast,
    Between,
    ConfigError,
    Context,
    NonNegative,
    Outcome,
    Positive,
    check_regular_file,
)
from .model_risk import gamma_pnl

NAME = "historical"
QUESTION = ("Along a recorded price history (and resamples of it), how do no hedge, daily and "
            "weekly delta hedging and a no-trade band compare for a 3-month at-the-money call?")
BOUNDS = {"spot": Positive(), "moneyness": Positive(), "window": AtLeast(2),
          "stride": AtLeast(1), "rate": Between(-1.0, 1.0), "weekly_every": AtLeast(2),
          "band_width": NonNegative(), "cost_rate": NonNegative(), "block": AtLeast(1)}


# ---------------------------------------------------------------------------------------
# Standard errors of overlapping windows
# ---------------------------------------------------------------------------------------

KERNELS = ("truncated", "bartlett")
# How the default data is named wherever it is shown: it is simulated, its dates are labels.
SYNTHETIC = "the SYNTHETIC hedgejax sample (simulated prices, not market data)"


def long_run_variance(autocov: Any, kernel: str = "truncated") -> float:
    """gamma_0 + 2 sum_{j=1}^{L} w_j gamma_j from the autocovariances gamma_0 .. gamma_L of a
    stationary series: n Var(mean of n terms) as n grows, the variance an i.i.d. formula
    would use in place of gamma_0.

    Weights: `"truncated"`, w_j = 1 (Hansen and Hodrick 1980): exact when the series is
    uncorrelated beyond lag L, as averages over overlapping windows that share returns only
    up to L starts apart are; `"bartlett"`, w_j = 1 - j / (L + 1) (Newey and West 1987):
    never negative, but on such a series it under-weights lag j by j / (L + 1) (for sums of
    h i.i.d. unit terms, L = h - 1, it gives (2 h^2 + 1) / 3 instead of h^2).

    Example:
        >>> h = 4                                        # sums of 4 i.i.d. unit terms
        >>> long_run_variance([h - j for j in range(h)])  # gamma_j = h - j
        16.0
    """
    gamma = np.asarray(autocov, dtype=np.float64)
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    lag = gamma.size - 1
    j = np.arange(1, lag + 1)
    weights = np.ones(lag) if kernel == "truncated" else 1.0 - j / (lag + 1.0)
    return float(gamma[0] + 2.0 * weights @ gamma[1:])


def sample_autocov(x: Any, lag: int) -> np.ndarray:
    """gamma_j = (1/n) sum_{t=j}^{n-1} (x_t - mean)(x_{t-j} - mean) for j = 0 .. lag (the
    1/n normalisation of Newey and West 1987)."""
    x = np.asarray(x, dtype=np.float64)
    dev = x - x.mean()
    n = dev.size
    return np.array([dev[j:] @ dev[:n - j] / n for j in range(lag + 1)])


def overlap_stderr(x: Any, lag: int, kernel: str = "truncated") -> float:
    """The standard error of the mean of `x`, a series whose terms are correlated up to `lag`
    apart (the P&Ls of overlapping windows: lag = (window - 1) // stride):
    sqrt(long_run_variance(sample_autocov(x, lag), kernel) / n). `lag` = 0 is the i.i.d.
    formula with the 1/n variance. Where the truncated sum is not positive (a small-sample
    accident: correlations estimated below their true values) the Bartlett kernel, which
    never is, is used instead.

    Example:
        >>> x = np.repeat(np.arange(10.0), 3)            # each value 3 times: lag 2
        >>> round(overlap_stderr(x, 0) / overlap_stderr(x, 2), 3)   # the i.i.d. SE: too small
        0.477
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size < 2:
        raise ValueError(f"need at least 2 values for a standard error, got {x.size}")
    lag = int(min(max(lag, 0), x.size - 1))
    gamma = sample_autocov(x, lag)
    variance = long_run_variance(gamma, kernel)
    if variance <= 0.0:
        variance = long_run_variance(gamma, "bartlett")
    return math.sqrt(max(variance, 0.0) / x.size)


def _load(cfg: dict[str, Any]):
    """(dates, prices, source) of the configured series; source names the data for the
    table's caption and the figure: the synthetic sample, or the CSV file's name."""
    import hedgejax as hj

    if not cfg["prices_csv"]:
        dates, prices = hj.data.sample_prices(with_dates=True)
        return dates, prices, SYNTHETIC
    path = Path(cfg["prices_csv"]).expanduser()
    try:
        # a FIFO would block the read forever and a device never ends: regular files only
        check_regular_file(path, "file")
    except ConfigError as err:
        raise ConfigError(f"config key 'prices_csv': {err}") from None
    try:
        dates, prices = hj.load_prices_csv(path, date_column=cfg["date_column"],
                                           price_column=cfg["price_column"] or None)
    except OSError as err:
        raise ValueError(f"config key 'prices_csv': cannot read {path}: "
                         f"{err.strerror or err}") from None
    except ValueError as err:
        raise ValueError(f"config key 'prices_csv': {err}") from None
    return dates, prices, path.name


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax

    import hedgejax as hj

    dates, prices, source = _load(cfg)
    n_returns = prices.size - 1
    window = cfg["window"]
    if window > n_returns:
        raise ValueError(f"config key 'window' must be at most {n_returns} (the series has "
                         f"{prices.size} prices), got {window}")
    if cfg["block"] > n_returns:
        raise ValueError(f"config key 'block' must be at most {n_returns} (the number of "
                         f"returns), got {cfg['block']}")
    log_returns = np.diff(np.log(prices))
    vol = float(np.std(log_returns, ddof=1) * math.sqrt(252.0))
    drift = float(np.mean(log_returns) * 252.0 + 0.5 * vol * vol)   # E[S_t] = S_0 e^{drift t}
    spot, rate = cfg["spot"], cfg["rate"]
    # float32-representable, so the option's (float32) expiry falls exactly on the grid's end
    maturity = float(np.float32(window / 252.0))
    call = hj.EuropeanCall(cfg["moneyness"] * spot, maturity)
    grid = hj.TimeGrid(maturity, window)
    believed = hj.BlackScholes(spot, vol, rate)
    costs = hj.Proportional(cfg["cost_rate"])
    n, key = cfg["paths"], ctx.key

    windows = hj.HistoricalPaths.from_windows(prices, window, cfg["stride"], rate=rate,
                                              spot=spot)
    worlds = {
        "windows": (windows, windows.n_series, jax.random.fold_in(key, 1)),
        f"bootstrap {cfg['block']}d": (
            hj.Bootstrap.from_prices(prices, block=cfg["block"], spot=spot, rate=rate), n,
            jax.random.fold_in(key, 2)),
        "BS reference": (hj.BlackScholes(spot, vol, rate, drift=drift), n,
                                    jax.random.fold_in(key, 3)),
    }
    strategies = [("delta 1d", hj.DeltaHedge()),
                  (f"delta {cfg['weekly_every']}d", hj.DeltaHedge(every=cfg["weekly_every"])),
                  (f"band {cfg['band_width']:g}", hj.BandHedge(cfg["band_width"]))]

    # window starts i and i + j share returns while j * stride < window
    lag = (window - 1) // cfg["stride"]
    table, samples, per_window, iid_stderr = [], {}, None, {}
    runs = [(w, s) for w in worlds for s in strategies]
    results: dict[tuple[str, str], Any] = {}
    for w, (label, strategy) in ctx.track(runs, "hedging along the data"):
        model, n_w, k = worlds[w]
        results[(w, label)] = hj.hedge(model, call, strategy, costs, grid, n_w, k,
                                       hedge_model=believed)
    realised = {}
    for w, (model, n_w, k) in worlds.items():
        paths = np.asarray(hj.simulate(model, grid, n_w, k), dtype=np.float64)
        gamma = gamma_pnl(paths, call.strike, maturity, maturity, vol, rate)
        realised[w] = np.std(np.diff(np.log(paths), axis=1), axis=1, ddof=1) * math.sqrt(252)
        daily = results[(w, strategies[0][0])]
        rows = [("no hedge", unhedged_result(daily))] + [(label, results[(w, label)])
                                                  for label, _ in strategies]
        for label, res in rows:
            row = {"world": w, **stats_row(label, res), "paths": int(res.pnl.shape[0])}
            if w == "windows":
                iid_stderr[label] = row["stderr"]
                row["stderr"] = overlap_stderr(res.pnl, lag)
                samples[label] = res.pnl
            row["gamma_pnl_mean"] = float(np.mean(gamma)) if res is daily else None
            table.append(row)
        if w == "windows":
            per_window = (np.asarray(daily.pnl), gamma)

    hist_rows = [r for r in table if r["world"] == "windows"]
    ref_rows = [r for r in table if r["world"] == "BS reference"]
    boot_rows = [r for r in table if r["world"].startswith("bootstrap")]
    starts = np.asarray(dates[:n_returns - window + 1:cfg["stride"]])

    synthetic = source == SYNTHETIC
    data_name = "SYNTHETIC sample (simulated, not market data)" if synthetic else source
    pnl_w, gamma_w = per_window
    fig = _figure(samples, starts, pnl_w, gamma_w, dates, prices, data_name, window, vol,
                  synthetic)

    by = {r["strategy"]: r for r in hist_rows}
    ref = {r["strategy"]: r for r in ref_rows}
    boot = {r["strategy"]: r for r in boot_rows}
    daily_label, weekly_label, band_label = (s[0] for s in strategies)
    worst = int(np.argmin(pnl_w))
    rv = realised["windows"]
    best = int(np.argmax(pnl_w))
    hac_factor = by[daily_label]["stderr"] / iid_stderr[daily_label]
    findings = [
        f"Data: {source}, {prices.size} prices from {dates[0]} to {dates[-1]}"
        f"{' (a synthetic calendar of consecutive weekdays)' if synthetic else ''}; daily "
        f"log-returns have an annualised vol of {vol:.2%} (the hedge vol) and drift "
        f"{drift:.2%}. {len(starts)} overlapping {window}-day windows (about "
        f"{n_returns // window} independent ones); their realised vols range from "
        f"{rv.min():.1%} to {rv.max():.1%}, median {np.median(rv):.1%}.",
        f"Along the windows, no hedge has a P&L std of {by['no hedge']['std_pnl']:.3f}; "
        f"delta hedging daily {by[daily_label]['std_pnl']:.3f} (99% ES "
        f"{by[daily_label]['es_0.99']:.3f}, cost {by[daily_label]['mean_cost']:.3f}), "
        f"{weekly_label} {by[weekly_label]['std_pnl']:.3f} (cost "
        f"{by[weekly_label]['mean_cost']:.3f}), the band {by[band_label]['std_pnl']:.3f} "
        f"(cost {by[band_label]['mean_cost']:.3f}, {by[band_label]['mean_trades']:.1f} "
        f"trades against {by[daily_label]['mean_trades']:.1f}).",
        f"In the Black-Scholes world the hedger believes in, the daily hedge's std is "
        f"{ref[daily_label]['std_pnl']:.3f} and its mean {ref[daily_label]['mean_pnl']:+.3f}; "
        f"along the data {by[daily_label]['std_pnl']:.3f} and "
        f"{by[daily_label]['mean_pnl']:+.3f}; on block-bootstrap resamples "
        f"{boot[daily_label]['std_pnl']:.3f} and {boot[daily_label]['mean_pnl']:+.3f}.",
        f"The gamma P&L on the same windows has mean {by[daily_label]['gamma_pnl_mean']:+.3f} "
        f"against the measured {by[daily_label]['mean_pnl']:+.3f} (before costs "
        f"{by[daily_label]['mean_pnl'] + by[daily_label]['mean_cost']:+.3f}); the worst "
        f"window starts {starts[worst]} and makes {pnl_w[worst]:+.3f} (gamma P&L "
        f"{gamma_w[worst]:+.3f}): realised vol {rv[worst]:.1%} against the hedge's {vol:.1%}; "
        f"the best starts {starts[best]} and makes {pnl_w[best]:+.3f} (realised vol "
        f"{rv[best]:.1%}). The long call, hedged, loses on {np.mean(pnl_w < 0):.0%} of the "
        f"windows (calm ones pay theta for gamma they do not use) and wins in the few that "
        f"hold the big moves.",
        f"Daily against weekly: the ordering along the data rests on about "
        f"{n_returns // window} independent windows; on {n} bootstrap resamples the daily "
        f"hedge's std is {boot[daily_label]['std_pnl']:.3f} (99% ES "
        f"{boot[daily_label]['es_0.99']:.3f}) and the weekly one's "
        f"{boot[weekly_label]['std_pnl']:.3f} (99% ES {boot[weekly_label]['es_0.99']:.3f}).",
        f"Standard errors along the windows respect their overlap: Hansen-Hodrick HAC "
        f"(truncated kernel over the {lag} later window starts that share returns). The "
        f"daily hedge's mean is {by[daily_label]['mean_pnl']:+.3f} +/- "
        f"{by[daily_label]['stderr']:.3f}, {hac_factor:.1f} times the "
        f"{iid_stderr[daily_label]:.3f} an i.i.d. formula would give "
        f"(sqrt(window / stride) = {math.sqrt(window / cfg['stride']):.1f} for sums of "
        f"independent daily terms).",
    ]
    return Outcome(
        table=table, findings=findings,
        title=(f"hedging a call along {'the SYNTHETIC sample' if synthetic else source}, "
               "block-bootstrap resamples of it and the Black-Scholes model"),
        caption=(f"One long call per path (strike {call.strike:g}, {window} trading days to "
                 f"expiry) bought at the Black-Scholes price at the data's vol {vol:.1%} and "
                 f"hedged with shares, on paths that start at {spot:g}; data: {source}. "
                 f"Money in $ at expiry per call; P&L > 0 is a gain; ES is a positive loss "
                 f"at 99%. Paths: windows, resamples or simulated paths. Windows overlap: "
                 f"their standard errors are Hansen-Hodrick HAC (lag {lag} window starts); "
                 f"resampled and model paths are independent (i.i.d. standard errors)."),
        headers=HEADERS,
        # the terminal: sample size, mean with its error, risk and cost (80 columns)
        display=["world", "strategy", "paths", "mean_pnl", "stderr", "std_pnl", "es_0.99",
                 "mean_cost"],
        results={"source": source, "synthetic_data": synthetic, "hedge_vol": vol,
                 "drift": drift,
                 "vol_estimator": "std of daily log-returns x sqrt(252), whole series",
                 "stderr_windows": f"Hansen-Hodrick HAC, truncated kernel, lag {lag}",
                 "hac_lag": lag, "iid_stderr_windows": iid_stderr,
                 "window_starts": [str(d) for d in starts],
                 "window_daily_pnl": pnl_w, "window_gamma_pnl": gamma_w,
                 "window_realised_vol": rv},
        figures={"pnl": fig})


HEADERS = {
    "world": "world",
    "paths": "paths",
    "stderr": "std error of mean ($)",
    "gamma_pnl_mean": "gamma P&L mean ($)",
    "p95_pnl": "95th pct P&L ($)",
}


def _figure(samples, starts, pnl_w, gamma_w, dates, prices, data_name: str, window: int,
            vol: float, synthetic: bool):
    import matplotlib.dates as mdates

    fig, ax = figure(ncols=2, size=(13.0, 4.8))
    fig.suptitle(f"Data: {data_name}", fontsize=11,
                 color="tab:red" if synthetic else "black")
    histograms(ax[0, 0], samples, xlabel="P&L per call at expiry ($)")
    ax[0, 0].set_title(f"{len(starts)} overlapping windows of {window} trading days, "
                       f"hedge vol {vol:.1%}", fontsize=10)
    left = ax[0, 1]
    left.plot(starts, pnl_w, lw=0.9, color="tab:red", label="daily delta P&L")
    left.plot(starts, gamma_w, lw=0.9, ls="--", color="k", label="gamma P&L")
    left.axhline(0.0, color="grey", lw=0.5)
    left.set_ylabel("P&L per call at expiry ($)")
    left.set_xlabel("window start" + (" (synthetic calendar: consecutive weekdays)"
                                      if synthetic else ""))
    locator = mdates.AutoDateLocator()
    left.xaxis.set_major_locator(locator)
    left.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    twin = left.twinx()
    twin.plot(np.asarray(dates), prices, color="tab:blue", lw=0.6, alpha=0.5)
    twin.set_ylabel("synthetic price ($)" if synthetic else "price (the file's currency)",
                    color="tab:blue")
    left.legend(fontsize=8, loc="upper left")
    left.set_title("daily-hedged P&L by window start (left axis) and the series (right)",
                   fontsize=10)
    return fig
