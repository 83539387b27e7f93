"""Output a person can read, for jump-risk, model-risk, portfolio-insurance, band-learning and
historical: every displayed column has a human header, every table a caption with a unit; and
the standard error of overlapping windows (historical) against independent facts."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from hedgejax.experiments._framework import load_config
from hedgejax.experiments.historical import long_run_variance, overlap_stderr, sample_autocov

# ---------------------------------------------------------------------------------------
# Standard errors of overlapping windows
# ---------------------------------------------------------------------------------------


def _overlapping_sums(rng, reps: int, n: int, h: int) -> np.ndarray:
    """`reps` series of n overlapping sums of h i.i.d. N(0, 1): x_t = e_t + ... + e_{t+h-1}."""
    e = rng.standard_normal((reps, n + h - 1))
    c = np.concatenate([np.zeros((reps, 1)), np.cumsum(e, axis=1)], axis=1)
    return c[:, h:] - c[:, :-h]


def _variance_of_mean(n: int, h: int) -> float:
    """Var of the mean of n overlapping sums of h i.i.d. unit terms (autocovariance h - |j|
    for |j| < h): (1/n^2) sum_{|j|<h} (n - |j|)(h - |j|) = [h^2 - (h^3 - h) / (3n)] / n."""
    return (h * h - (h ** 3 - h) / (3.0 * n)) / n


@pytest.mark.parametrize("h", [1, 2, 5, 63])
def test_long_run_variance_of_overlapping_sums_population(h):
    gamma = np.array([h - j for j in range(h)], dtype=float)   # lags 0 .. h-1
    # truncated kernel at lag h - 1: exactly the long-run variance h^2
    assert long_run_variance(gamma, "truncated") == pytest.approx(h * h, rel=1e-12)
    # Bartlett (Newey-West) at lag h - 1: (2 h^2 + 1) / 3, about 2/3 of it
    assert long_run_variance(gamma, "bartlett") == pytest.approx((2 * h * h + 1) / 3,
                                                                  rel=1e-12)
    # the closed form of Var(mean) against the double sum it comes from
    n = 200
    lags = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    direct = np.where(lags < h, h - lags, 0).sum() / n ** 2
    assert _variance_of_mean(n, h) == pytest.approx(direct, rel=1e-12)
    assert n * _variance_of_mean(n, h) == pytest.approx(h * h, rel=h / (3 * n) + 1e-12)


def test_overlap_stderr_of_iid_data_is_the_ordinary_one():
    x = np.random.default_rng(0).standard_normal(20_000)
    ordinary = np.std(x, ddof=1) / math.sqrt(x.size)
    # lag 0 is the ordinary formula (1/n variance)
    assert overlap_stderr(x, 0) == pytest.approx(np.std(x) / math.sqrt(x.size), rel=1e-12)
    # 10 lags of zero true autocorrelation: the same within sampling error (about 2.3%)
    assert overlap_stderr(x, 10) == pytest.approx(ordinary, rel=0.1)
    assert overlap_stderr(x, 10, "bartlett") == pytest.approx(ordinary, rel=0.1)


def test_overlap_stderr_of_overlapping_sums_matches_the_closed_form():
    rng = np.random.default_rng(1)
    reps, n, h = 400, 2000, 10
    x = _overlapping_sums(rng, reps, n, h)
    truth = _variance_of_mean(n, h)
    means = x.mean(axis=1)
    # the closed form is the variance of the mean (relative SE sqrt(2 / 400) = 7%)
    assert np.var(means, ddof=1) == pytest.approx(truth, rel=0.25)
    hac = np.array([overlap_stderr(row, h - 1) ** 2 for row in x])
    iid = np.array([overlap_stderr(row, 0) ** 2 for row in x])
    # the HAC variance is right on average (relative SE of this mean about 0.6%; the
    # demeaning bias about -(2h - 1) / n = -1%) ...
    assert hac.mean() / truth == pytest.approx(1.0, abs=0.05)
    # ... where the i.i.d. formula is h times too small
    assert iid.mean() / truth == pytest.approx(1.0 / h, rel=0.1)
    # Bartlett at the same lag under-weights the overlap: about (2h^2 + 1) / (3 h^2) of it
    bartlett = np.mean([overlap_stderr(row, h - 1, "bartlett") ** 2 for row in x])
    assert bartlett / truth == pytest.approx((2 * h * h + 1) / (3 * h * h), abs=0.05)


def test_overlap_stderr_on_the_default_data_is_about_sqrt_window_times_the_iid_one():
    """The historical experiment's default: 694 windows of 63 days, one a day. Its P&L, hedged
    daily, is the gamma P&L of the window (NumPy, as the experiment checks), a sum of daily
    terms: the HAC SE should exceed the i.i.d. one by about sqrt(63) = 7.9 (less the few %
    its demeaning bias takes with n / h = 11)."""
    import hedgejax as hj
    from hedgejax.experiments.model_risk import gamma_pnl

    cfg = load_config("historical")
    window, stride = cfg["window"], cfg["stride"]
    prices = hj.data.sample_prices()
    vol = np.std(np.diff(np.log(prices)), ddof=1) * math.sqrt(252)
    starts = np.arange(0, prices.size - window, stride)
    paths = 100.0 * prices[starts[:, None] + np.arange(window + 1)] / prices[starts, None]
    maturity = window / 252
    pnl = gamma_pnl(paths, 100.0, maturity, maturity, vol, cfg["rate"])
    assert pnl.size == 694
    factor = overlap_stderr(pnl, (window - 1) // stride) / overlap_stderr(pnl, 0)
    assert 0.7 * math.sqrt(window) < factor < 1.2 * math.sqrt(window)


def test_overlap_stderr_validates():
    with pytest.raises(ValueError, match="at least 2 values"):
        overlap_stderr([1.0], 0)
    with pytest.raises(ValueError, match="kernel"):
        long_run_variance([1.0, 0.5], "parzen")
    # a lag beyond the data is capped at n - 1
    assert sample_autocov([1.0, 2.0, 3.0], 2).size == 3
    assert overlap_stderr([1.0, 2.0, 3.0], 50) == overlap_stderr([1.0, 2.0, 3.0], 2)


# ---------------------------------------------------------------------------------------
# Headers and captions
# ---------------------------------------------------------------------------------------

# keys that are already the words a person reads
PLAIN = {"world", "strategy", "band", "rebalance", "paths"}   # keys that read as headers
MONEY = re.compile(r"pnl|cost|loss|premium|price|shortfall|error|objective|gap_to|^var_|^es_|"
                   r"stderr|v0_")
UNIT = re.compile(r"\$|%|\bshares?\b|\byears?\b|\bdays?\b|\bbp\b")


def check_fits(folder, widths=(80, 120)) -> None:
    """The run's terminal table (rebuilt from results.json: title, caption, headers, the
    displayed columns) sits side by side at 80 and 120 columns, every line within the width,
    no number cut, no short "(...)" unit split across header lines, and nothing blank on top.
    Called by check_readable and by the tests of the other experiments."""
    from rich.console import Console

    from hedgejax.experiments._framework import UNIT_MAX, print_table

    payload = json.loads((folder / "results.json").read_text())
    display, headers = payload["display"], payload["headers"]
    for width in widths:
        console = Console(width=width, record=True, force_terminal=False)
        with console.capture() as cap:
            print_table(payload["title"], payload["table"], headers=headers,
                        caption=payload["caption"], display=display, console=console)
        text = cap.get()
        lines = text.splitlines()
        assert lines[0].strip(), "blank line before the title"
        assert max(len(line.rstrip()) for line in lines) <= width, (width, text)
        assert any(set(line.strip()) == {"━"} for line in lines), \
            f"{payload['experiment']} at {width} columns: one block per row\n{text}"
        for col in display:
            for unit in re.findall(r"\([^()]*\)", headers[col]):
                if len(unit) <= UNIT_MAX and " " in unit:
                    assert unit in text, (width, headers[col], text)


def check_readable(folder) -> None:
    """The run folder's report.md gives the table a caption with a unit and a sign convention,
    and every column a human header (the experiment's, or STATS_HEADERS), money with "$";
    the terminal table fits 80 and 120 columns (`check_fits`).
    Called by the tests that run jump-risk, model-risk, portfolio-insurance, band-learning and
    historical (tests/test_experiments_a.py, _b.py, _c.py), on their run folders."""
    check_fits(folder)
    payload = json.loads((folder / "results.json").read_text())
    keys = list(payload["table"][0])
    lines = (folder / "report.md").read_text().splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("| "))
    headers = [h.strip() for h in lines[top].strip().strip("|").split(" | ")]
    assert len(headers) == len(keys), (headers, keys)
    for key, header in zip(keys, headers, strict=True):
        assert header != key or key in PLAIN, f"column {key!r} has no human header"
        numeric = any(isinstance(r[key], float) for r in payload["table"])
        ratio = key.startswith(("gap_in", "z_", "p_")) or "_vs_" in key
        if numeric and MONEY.search(key) and not ratio:
            assert "$" in header, f"money column {key!r} -> {header!r} has no unit"
    title = max(i for i in range(top) if lines[i].startswith("## "))
    caption = " ".join(line for line in lines[title + 1:top] if line.strip())
    assert len(caption) > 40, f"caption {caption!r}"
    assert "$" in caption and UNIT.search(caption), f"caption {caption!r} has no unit"
    assert re.search(r"gain|loss|lower is better", caption), \
        f"caption {caption!r} has no sign convention"


def _fake_run(folder, caption: str, header: str, experiment: str = "x", table=None,
              headers=None):
    folder.mkdir()
    table = table or [{"strategy": "delta", "mean_pnl": 1.5}]
    (folder / "results.json").write_text(json.dumps(
        {"experiment": experiment, "table": table, "title": "t", "caption": caption,
         "headers": headers or {"strategy": "strategy", "mean_pnl": header},
         "display": list(table[0])}))
    (folder / "report.md").write_text(
        f"# x\n\n## Results\n\n{caption}\n\n| strategy | {header} |\n|---|---:|\n"
        "| delta | 1.5 |\n")
    return folder


def test_check_readable_rejects_raw_keys_missing_units_and_captions(tmp_path):
    good = "One call held long; money in $ at T; P&L > 0 is a gain."
    check_readable(_fake_run(tmp_path / "ok", good, "mean P&L ($)"))
    with pytest.raises(AssertionError, match="no human header"):
        check_readable(_fake_run(tmp_path / "raw", good, "mean_pnl"))
    with pytest.raises(AssertionError, match="no unit"):
        check_readable(_fake_run(tmp_path / "unitless", good, "mean P&L"))
    with pytest.raises(AssertionError, match="caption"):
        check_readable(_fake_run(tmp_path / "bare", "", "mean P&L ($)"))


def test_check_fits_rejects_a_table_in_blocks(tmp_path):
    row = {"strategy": "delta", **{f"column_{i}": 12345.678 for i in range(12)}}
    wide = _fake_run(tmp_path / "wide", "c", "h", table=[row],
                     headers={k: f"{k} ($ loss)" for k in row})
    check_fits(wide, widths=(200,))
    with pytest.raises(AssertionError, match="one block per row"):
        check_fits(wide, widths=(80,))


def test_historical_names_its_data_synthetic_or_the_users_file(tmp_path):
    from hedgejax.experiments.historical import SYNTHETIC, _load

    cfg = load_config("historical")
    assert _load(cfg)[2] == SYNTHETIC and "SYNTHETIC" in SYNTHETIC
    path = tmp_path / "my_closes.csv"
    path.write_text("date,close\n2024-01-02,100\n2024-01-03,101\n2024-01-04,99.5\n")
    dates, prices, source = _load({**cfg, "prices_csv": str(path)})
    assert source == "my_closes.csv" and prices.size == 3
