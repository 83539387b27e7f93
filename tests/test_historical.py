"""Data-driven worlds (HistoricalPaths, Bootstrap), the CSV loader and the shipped sample,
against references written here: Black-Scholes closed forms, hand-computed hedge P&L following
the conventions of docs/architecture.md, the moving-block-bootstrap distribution and stdlib
CSV files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hedgejax as hj
from hedgejax._models.historical import Bootstrap, HistoricalPaths, load_prices_csv
from hedgejax._random import Draws, key_words
from hedgejax.data import SAMPLE_FILE, generate_sample_prices, sample_prices, write_sample_prices

KEY = jax.random.key(0)


# ---------------------------------------------------------------------------------------------
# References (independent of hedgejax).
# ---------------------------------------------------------------------------------------------


def norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def bs_call(spot, strike, tau, vol, rate, div) -> tuple[float, float]:
    """Black-Scholes call price and delta (continuous rate and dividend yield)."""
    if tau <= 0:
        return max(spot - strike, 0.0), float(spot > strike)
    sd = vol * math.sqrt(tau)
    d1 = (math.log(spot / strike) + (rate - div) * tau) / sd + 0.5 * sd
    d2 = d1 - sd
    delta = math.exp(-div * tau) * norm_cdf(d1)
    return spot * delta - strike * math.exp(-rate * tau) * norm_cdf(d2), delta


def gbm_series(n_points: int, seed: int, spot=100.0, vol=0.2, dt=1 / 252) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal(n_points - 1)
    return spot * np.exp(np.concatenate([[0.0], np.cumsum(vol * math.sqrt(dt) * z)]))


def rescaled(prices: np.ndarray, spot: float) -> np.ndarray:
    prices = np.atleast_2d(prices)
    return spot * prices / prices[:, :1]


# ---------------------------------------------------------------------------------------------
# HistoricalPaths: hedging along known series.
# ---------------------------------------------------------------------------------------------


def test_no_hedge_along_one_series_is_payoff_less_financed_price(x64):
    series = gbm_series(64, seed=1)
    strike, rate, div, vol = 100.0, 0.03, 0.01, 0.2
    grid = hj.TimeGrid(63 / 252, 63)  # daily data: one grid step per close
    model = HistoricalPaths(series, rate=rate, div=div)
    model.check_grid(grid)
    res = hj.hedge(model, hj.EuropeanCall(strike, grid.maturity), hj.NoHedge(), None, grid, 1,
                   KEY, hedge_model=hj.BlackScholes(series[0], vol, rate, div))
    v0, _ = bs_call(series[0], strike, grid.maturity, vol, rate, div)
    expected = max(series[-1] - strike, 0.0) - v0 * math.exp(rate * grid.maturity)
    np.testing.assert_allclose(float(res.initial_price), v0, rtol=1e-12)
    np.testing.assert_allclose(float(res.terminal_spot[0]), series[-1], rtol=1e-12)
    np.testing.assert_allclose(float(res.pnl[0]), expected, rtol=1e-10, atol=1e-10)


def test_delta_hedge_along_five_prices_matches_hand_computation(x64):
    data = np.array([50.0, 51.0, 49.5, 52.0, 53.0])  # weekly closes, rescaled to spot 100
    spot, strike, vol, rate, div, cost_rate = 100.0, 102.0, 0.25, 0.04, 0.015, 0.002
    dt = 1 / 52
    grid = hj.TimeGrid(4 * dt, 4)
    model = HistoricalPaths(data, rate=rate, div=div, spot=spot)
    model.check_grid(grid)
    res = hj.hedge(model, hj.EuropeanCall(strike, grid.maturity), hj.DeltaHedge(),
                   hj.Proportional(cost_rate), grid, 1, KEY,
                   hedge_model=hj.BlackScholes(spot, vol, rate, div))

    # conventions (docs/architecture.md): h_i = -delta(S_i, T - t_i), gains
    # h_i (S_{i+1} e^{q dt} - S_i e^{r dt})
    # accrued from t_{i+1} to T; costs rate |h_i - h_{i-1}| S_i accrued from t_i to T.
    s = spot * data / data[0]
    big_t = 4 * dt
    v0, _ = bs_call(s[0], strike, big_t, vol, rate, div)
    gains = cost = 0.0
    previous = 0.0
    for i in range(4):
        t = i * dt
        h = -bs_call(s[i], strike, big_t - t, vol, rate, div)[1]
        gains += h * (s[i + 1] * math.exp(div * dt) - s[i] * math.exp(rate * dt)) * math.exp(
            rate * (big_t - t - dt))
        cost += cost_rate * abs(h - previous) * s[i] * math.exp(rate * (big_t - t))
        previous = h
    hedge_error = max(s[-1] - strike, 0.0) - v0 * math.exp(rate * big_t) + gains
    np.testing.assert_allclose(float(res.hedge_error[0]), hedge_error, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(res.cost[0]), cost, rtol=1e-10)
    np.testing.assert_allclose(float(res.pnl[0]), hedge_error - cost, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(res.final_position[0]), previous, rtol=1e-12)
    assert int(res.n_trades[0]) == 4


def test_simulate_returns_the_data_rescaled(x64):
    prices = np.stack([gbm_series(11, seed=k, spot=20.0 * (k + 1)) for k in range(3)])
    grid = hj.TimeGrid(10 / 252, 10)
    model = HistoricalPaths(prices)
    assert float(model.spot) == prices[0, 0]
    np.testing.assert_allclose(np.asarray(hj.simulate(model, grid, 3, KEY)),
                               rescaled(prices, prices[0, 0]), rtol=1e-13)
    # An explicit spot changes levels and keeps every log-return.
    paths = np.asarray(hj.simulate(HistoricalPaths(prices, spot=7.0), grid, 3, KEY))
    np.testing.assert_allclose(paths[:, 0], 7.0, rtol=1e-14)
    np.testing.assert_allclose(np.diff(np.log(paths)), np.diff(np.log(prices)), atol=1e-13)
    # A shorter grid takes the first columns; fewer paths take the first series.
    short = np.asarray(hj.simulate(model, hj.TimeGrid(4 / 252, 4), 2, KEY))
    np.testing.assert_allclose(short, rescaled(prices, prices[0, 0])[:2, :5], rtol=1e-13)


def test_simulate_float32_is_close_to_the_data():
    prices = gbm_series(253, seed=3)
    paths = np.asarray(hj.simulate(HistoricalPaths(prices), hj.TimeGrid(1.0, 252), 1, KEY))
    assert paths.dtype == np.float32
    np.testing.assert_allclose(paths[0], prices, rtol=2e-6)


def test_path_p_follows_series_p_in_hedge(x64):
    prices = np.stack([gbm_series(22, seed=10 + k, spot=90.0 + 5 * k) for k in range(3)])
    strike, vol, rate = 100.0, 0.3, 0.02
    grid = hj.TimeGrid(21 / 252, 21)
    model = HistoricalPaths(prices, rate=rate)
    expected_spot = rescaled(prices, prices[0, 0])[:, -1]
    v0, _ = bs_call(prices[0, 0], strike, grid.maturity, vol, rate, 0.0)
    expected = np.maximum(expected_spot - strike, 0.0) - v0 * math.exp(rate * grid.maturity)
    # block_size=2 splits 3 paths into blocks of 2: the padding path index 3 has no series.
    for block_size in (2, 1024):
        res = hj.hedge(model, hj.EuropeanCall(strike, grid.maturity), hj.NoHedge(), None, grid,
                       3, KEY, hedge_model=hj.BlackScholes(100.0, vol, rate),
                       block_size=block_size)
        np.testing.assert_allclose(np.asarray(res.terminal_spot), expected_spot, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(res.pnl), expected, rtol=1e-10, atol=1e-10)


def test_more_paths_than_series_is_refused():
    model = HistoricalPaths(np.ones((3, 6)) + np.arange(6))
    grid = hj.TimeGrid(5 / 252, 5)
    assert model.max_paths == 3
    with pytest.raises(ValueError, match=r"n_paths must be <= 3.*n_paths=4"):
        hj.simulate(model, grid, 4, KEY)
    with pytest.raises(ValueError, match="n_paths=4"):
        hj.hedge(model, hj.EuropeanCall(1.0, grid.maturity), hj.NoHedge(), None, grid, 4, KEY,
                 hedge_model=hj.BlackScholes(1.0, 0.2))


def test_grid_longer_than_data_is_caught():
    model = HistoricalPaths([100.0, 101.0, 102.0, 101.0])
    model.check_grid(hj.TimeGrid(3 / 252, 3))
    with pytest.raises(ValueError, match=r"n_steps=4 .*only 3 steps"):
        model.check_grid(hj.TimeGrid(4 / 252, 4))
    # Inside the compiled step nothing can raise: steps past the data are NaN, never a
    # silently repeated price, so hedge() stops on its non-finite P&L check (or, when it
    # calls check_grid, on the ValueError above).
    path_index = jnp.zeros(2, jnp.uint32)
    state = model.init(path_index)
    for step, expected in ((2, 101.0), (3, np.nan), (7, np.nan)):
        draws = Draws(key_words(KEY), path_index, step, jnp.float32)
        spot = np.exp(np.asarray(model.step(state, step / 252, 1 / 252, draws).log_spot))
        np.testing.assert_allclose(spot, [expected, expected], rtol=1e-6)
    grid = hj.TimeGrid(5 / 252, 5)
    with pytest.raises(Exception, match="n_steps|non-finite"):
        hj.hedge(model, hj.EuropeanCall(100.0, grid.maturity), hj.NoHedge(), None, grid, 1,
                 KEY, hedge_model=hj.BlackScholes(100.0, 0.2))


@pytest.mark.parametrize(
    ("prices", "match"),
    [
        ([[1.0, 2.0, 3.0], [1.0, 2.0, -1.0]], r"prices\[1, 2\]=-1\.0"),
        ([1.0, 2.0, 3.0, float("nan")], r"prices\[3\]=nan"),
        ([[1.0, 0.0]], r"prices\[0, 1\]=0\.0"),
        ([1.0], "at least 2 points"),
        (np.ones((2, 2, 2)), "1-D .* or 2-D"),
        ([["a", "b"]], "array of real numbers"),
    ],
)
def test_historical_paths_validation(prices, match):
    with pytest.raises(ValueError, match=match):
        HistoricalPaths(prices)


def test_historical_paths_parameters_and_measure():
    with pytest.raises(ValueError, match="spot"):
        HistoricalPaths([1.0, 2.0], spot=-1.0)
    with pytest.raises(ValueError, match="rate"):
        HistoricalPaths([1.0, 2.0], rate=float("inf"))
    model = HistoricalPaths([1.0, 2.0])
    with pytest.raises(ValueError, match="no risk-neutral measure"):
        model.risk_neutral()
    with pytest.raises(ValueError, match="no risk-neutral measure"):
        hj.mc_price(model, hj.EuropeanCall(1.0, 1.0), 1, KEY)
    assert float(model.replace(spot=3.0).spot) == 3.0


def test_from_windows_backtests_every_start():
    series = np.arange(1.0, 11.0)  # 10 points, 9 steps
    model = HistoricalPaths.from_windows(series, window=3, stride=2)
    np.testing.assert_array_equal(np.asarray(model.prices),
                                  [[1, 2, 3, 4], [3, 4, 5, 6], [5, 6, 7, 8], [7, 8, 9, 10]])
    with pytest.raises(ValueError, match="window=10"):
        HistoricalPaths.from_windows(series, window=10)
    with pytest.raises(ValueError, match="stride"):
        HistoricalPaths.from_windows(series, window=2, stride=0)


# ---------------------------------------------------------------------------------------------
# Bootstrap.
# ---------------------------------------------------------------------------------------------

RETURNS = 0.01 * np.random.default_rng(42).standard_t(df=4, size=300)  # distinct values


def resampled_indices(model: Bootstrap, n_paths: int, n_steps: int, key, returns):
    """The index into `returns` of every simulated step's log-return, checked to be exact."""
    paths = np.asarray(hj.simulate(model, hj.TimeGrid(n_steps / 252, n_steps), n_paths, key))
    log_returns = np.diff(np.log(paths), axis=1)
    distance = np.abs(log_returns[..., None] - returns)
    assert distance.min(axis=-1).max() < 1e-12, "a step's return is not a historical return"
    return np.argmin(distance, axis=-1), log_returns


def mbb_weights(n: int, block: int) -> np.ndarray:
    """Probability that a uniformly chosen step of a moving-block resample uses return k:
    (number of blocks [s, s+block) with s in [0, n-block] that contain k) / (n_starts block)."""
    n_starts = n - block + 1
    counts = np.array([min(k, n_starts - 1) - max(0, k - block + 1) + 1 for k in range(n)])
    return counts / (n_starts * block)


def test_bootstrap_steps_are_historical_returns_in_contiguous_blocks(x64):
    block, n_steps = 7, 50
    model = Bootstrap(RETURNS, block=block, spot=50.0)
    assert model.max_paths is None
    index, _ = resampled_indices(model, 400, n_steps, KEY, RETURNS)
    steps = np.arange(n_steps)
    inside = (steps[1:] % block) != 0  # step i+1 continues the block of step i
    np.testing.assert_array_equal(index[:, 1:][:, inside], index[:, :-1][:, inside] + 1)
    starts = index[:, steps % block == 0]
    n_starts = RETURNS.size - block + 1
    assert starts.min() >= 0 and starts.max() <= n_starts - 1
    # Starts are uniform on {0, ..., n_starts - 1}: jittered to (0, 1), then Kolmogorov-Smirnov.
    jitter = np.random.default_rng(0).random(starts.shape)
    u = np.sort(((starts + jitter) / n_starts).ravel())
    i = np.arange(1, u.size + 1)
    d = max(np.max(i / u.size - u), np.max(u - (i - 1) / u.size))
    assert d < math.sqrt(-0.5 * math.log(1e-3 / 2)) / math.sqrt(u.size)


def test_bootstrap_distribution_matches_the_data(x64):
    block, n_steps, n_paths = 10, 40, 4000
    _, log_returns = resampled_indices(Bootstrap(RETURNS, block=block), n_paths, n_steps,
                                       jax.random.key(5), RETURNS)
    weights = mbb_weights(RETURNS.size, block)
    assert abs(weights.sum() - 1.0) < 1e-12
    for power in (1, 2):
        per_path = np.mean(log_returns**power, axis=1)  # paths are independent
        se = per_path.std(ddof=1) / math.sqrt(n_paths)
        expected = float(weights @ RETURNS**power)
        assert abs(per_path.mean() - expected) < 4 * se
        # ... and the moving-block weights are close to uniform, so it matches the data too.
        historical = float(np.mean(RETURNS**power))
        assert abs(per_path.mean() - historical) < 4 * se + abs(expected - historical)
    variance = np.var(log_returns)
    assert abs(variance / np.var(RETURNS) - 1) < 0.1


def test_bootstrap_keys_paths_and_blocks_of_paths():
    model = Bootstrap(RETURNS, block=5)
    grid = hj.TimeGrid(30 / 252, 30)
    a = np.asarray(hj.simulate(model, grid, 64, jax.random.key(1)))
    b = np.asarray(hj.simulate(model, grid, 64, jax.random.key(2)))
    np.testing.assert_array_equal(a, np.asarray(hj.simulate(model, grid, 64, jax.random.key(1))))
    assert np.mean(np.any(a != b, axis=1)) > 0.9
    assert len({tuple(row) for row in a}) == 64  # paths differ from each other
    # hedge() sees the same paths, and gives bit-identical P&L, whatever its block of paths.
    call = hj.EuropeanCall(100.0, grid.maturity)
    hedge_model = hj.BlackScholes(100.0, 0.2)
    runs = [hj.hedge(model, call, hj.DeltaHedge(), hj.Proportional(0.001), grid, 100,
                     jax.random.key(1), hedge_model=hedge_model, block_size=size)
            for size in (32, 1024)]
    np.testing.assert_array_equal(np.asarray(runs[0].terminal_spot),
                                  np.asarray(runs[1].terminal_spot))
    np.testing.assert_array_equal(np.asarray(runs[0].pnl), np.asarray(runs[1].pnl))
    np.testing.assert_allclose(np.asarray(runs[0].terminal_spot)[:64], a[:, -1], rtol=1e-6)


def test_bootstrap_demean(x64):
    demeaned = RETURNS - RETURNS.mean()
    model = Bootstrap(RETURNS, block=4, demean=True)
    _, log_returns = resampled_indices(model, 100, 20, KEY, demeaned)
    assert not np.allclose(RETURNS.mean(), 0.0)
    # The same key resamples the same blocks, each shifted by the sample mean.
    _, raw = resampled_indices(Bootstrap(RETURNS, block=4), 100, 20, KEY, RETURNS)
    np.testing.assert_allclose(log_returns, raw - RETURNS.mean(), atol=1e-13)


def test_bootstrap_from_prices(x64):
    prices = gbm_series(101, seed=4)
    model = Bootstrap.from_prices(prices, block=3)
    np.testing.assert_allclose(np.asarray(model.returns), np.diff(np.log(prices)), rtol=1e-13)
    assert float(model.spot) == prices[-1] and model.n_returns == 100
    assert float(Bootstrap.from_prices(prices, spot=10.0).spot) == 10.0
    with pytest.raises(ValueError, match=r"prices\[7\]"):
        Bootstrap.from_prices(np.where(np.arange(101) == 7, -1.0, prices))
    with pytest.raises(ValueError, match="1-D"):
        Bootstrap.from_prices(np.ones((2, 5)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block": 0}, "block=0"),
        ({"block": 301}, r"block must be an integer in \[1, 300\].*block=301"),
        ({"block": 2.5}, "block=2.5"),
        ({"returns": np.where(np.arange(300) == 5, np.nan, RETURNS)}, r"returns\[5\]=nan"),
        ({"returns": np.ones((2, 3))}, "1-D"),
        ({"returns": []}, "non-empty"),
        ({"spot": 0.0}, "spot"),
        ({"div": float("nan")}, "div"),
    ],
)
def test_bootstrap_validation(kwargs, match):
    arguments = {"returns": RETURNS} | kwargs
    with pytest.raises(ValueError, match=match):
        Bootstrap(**arguments)


def test_bootstrap_has_no_risk_neutral_measure():
    with pytest.raises(ValueError, match="Bootstrap has no risk-neutral measure"):
        Bootstrap(RETURNS).risk_neutral()


# ---------------------------------------------------------------------------------------------
# CSV loading and the shipped sample.
# ---------------------------------------------------------------------------------------------


def test_sample_round_trip_and_regeneration(tmp_path):
    dates, prices = sample_prices(with_dates=True)
    assert prices.shape == (757,) and prices.dtype == np.float64 and np.all(prices > 0)
    assert dates.dtype == np.dtype("datetime64[D]")
    assert np.all(np.diff(dates) > np.timedelta64(0, "D"))
    np.testing.assert_array_equal(sample_prices(), prices)

    # Round trip through a file written by the stdlib, with the price column not first.
    path = tmp_path / "prices.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["volume", "date", "close"])
        for k, (date, price) in enumerate(zip(dates, prices, strict=True)):
            writer.writerow([1000 + k, str(date), repr(float(price))])
    again_dates, again = load_prices_csv(path, price_column="close")
    np.testing.assert_array_equal(again, prices)
    np.testing.assert_array_equal(again_dates, dates)
    _, default = load_prices_csv(str(path))  # default: the column named close
    np.testing.assert_array_equal(default, prices)
    _, volume = load_prices_csv(str(path), price_column="volume")
    np.testing.assert_array_equal(volume, 1000.0 + np.arange(757))

    # The shipped file is exactly what its documented generator writes.
    regenerated = tmp_path / SAMPLE_FILE
    write_sample_prices(regenerated)
    shipped = Path(__file__).parents[1] / "hedgejax" / "data" / SAMPLE_FILE
    assert regenerated.read_bytes() == shipped.read_bytes()
    gen_dates, gen_prices = generate_sample_prices()
    np.testing.assert_allclose(gen_prices, prices, atol=5.1e-5)
    np.testing.assert_array_equal(gen_dates, dates)


def test_text_dates_and_comments(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("# a comment\n\ndate,close\n03/01/2021,10\n\n# mid\n04/01/2021,11.5\n")
    dates, prices = load_prices_csv(path, parse_dates=False)
    assert dates == ["03/01/2021", "04/01/2021"]
    np.testing.assert_array_equal(prices, [10.0, 11.5])


BAD_CSVS = [
    ("", 1, "empty file"),
    ("# only a comment\n", 1, "empty file"),
    ("date,close\n", 2, "no data rows"),
    ("day,close\n2021-01-04,1\n", 1, "missing column 'date'"),
    ("date,close\n2021-01-04,1\n2021-01-05,\n", 3, "missing value in column 'close'"),
    ("date,close\n2021-01-04,1\n,2\n", 3, "missing value in column 'date'"),
    ("date,close\n2021-01-04,1\n2021-01-05\n", 3, "1 fields where the header has 2"),
    ("date,close\n2021-01-04,1\n2021-01-05,abc\n", 3, r"non-numeric value \(3 characters\)"),
    ("date,close\n2021-01-04,1\n2021-01-05,1,234\n", 3, "3 fields"),
    ("date,close\n2021-01-04,1\n2021-01-05,-2.5\n", 3, "> 0, got '-2.5'"),
    ("date,close\n2021-01-04,0\n", 2, "> 0, got '0'"),
    ("date,close\n2021-01-04,nan\n", 2, "finite and > 0"),
    ("date,close\n2021-01-04,1\n2021-01-05,2\n2021-01-04,3\n", 4, r"duplicate date.*line 2"),
    ("date,close\n2021-01-04,1\n2021/01/05,2\n", 3, "not an ISO date"),
    ("date,close\n2021-01-04,1\n2021-02-30,2\n", 3, "not an ISO date"),
    ("# synthetic\n# data\ndate,close\n2021-01-04,1\n2021-01-05,x\n", 5, "non-numeric"),
]


@pytest.mark.parametrize(("text", "line", "reason"), BAD_CSVS)
def test_csv_errors_name_file_line_and_reason(tmp_path, text, line, reason):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.csv, line {line}: .*{reason}"):
        load_prices_csv(path)


def test_csv_missing_price_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("date,close\n2021-01-04,1\n")
    with pytest.raises(ValueError, match=r"line 1: missing column 'adj'"):
        load_prices_csv(path, price_column="adj")
    path.write_text("date\n2021-01-04\n")
    with pytest.raises(ValueError, match=r"line 1: missing column: no price column"):
        load_prices_csv(path)


def test_hedge_along_the_shipped_sample():
    prices = sample_prices()
    daily = np.diff(np.log(prices))
    vol = float(daily.std() * math.sqrt(252))
    grid = hj.TimeGrid(63 / 252, 63)  # daily data, a quarter
    model = Bootstrap.from_prices(prices, block=20, rate=0.02)
    call = hj.EuropeanCall(float(model.spot), grid.maturity)
    hedge_model = hj.BlackScholes(model.spot, vol, rate=0.02)
    res = hj.hedge(model, call, hj.DeltaHedge(), hj.Proportional(0.0005), grid, 4000, KEY,
                   hedge_model=hedge_model)
    assert np.all(np.isfinite(np.asarray(res.pnl)))
    assert float(np.std(res.hedge_error)) < 0.3 * float(np.std(res.unhedged_pnl))
    assert float(np.min(res.cost)) > 0

    # A backtest: the same hedge started on every fifth day of the sample.
    windows = HistoricalPaths.from_windows(prices, window=63, stride=5, rate=0.02)
    windows.check_grid(grid)
    res = hj.hedge(windows, call, hj.DeltaHedge(), None, grid, windows.max_paths, KEY,
                   hedge_model=hedge_model)
    assert res.pnl.shape == (windows.n_series,)
    assert float(np.std(res.hedge_error)) < 0.3 * float(np.std(res.unhedged_pnl))
