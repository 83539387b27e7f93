"""The command line: results agree with closed forms; bad input is one line and status 2."""

import json
import math
import subprocess
import sys

import pytest

from hedgejax import cli


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _bs_call(s, k, t, vol, r, q):
    sd = vol * math.sqrt(t)
    d1 = (math.log(s / k) + (r - q) * t) / sd + 0.5 * sd
    return s * math.exp(-q * t) * _norm_cdf(d1) - k * math.exp(-r * t) * _norm_cdf(d1 - sd)


def _run_json(capsys, argv):
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_price_json_matches_closed_form(capsys, x64):
    out = _run_json(capsys, ["price", "--spot", "105", "--strike", "100", "--vol", "0.25",
                             "--rate", "0.03", "--div", "0.01", "--maturity", "0.5",
                             "--x64", "--json"])
    expected = _bs_call(105, 100, 0.5, 0.25, 0.03, 0.01)
    assert out["results"]["price"] == pytest.approx(expected, rel=1e-10)


def test_greeks_json_delta_matches_closed_form(capsys, x64):
    out = _run_json(capsys, ["greeks", "--quantity", "3", "--x64", "--json"])
    sd = 0.2
    d1 = 0.5 * sd
    assert out["results"]["delta"] == pytest.approx(3 * _norm_cdf(d1), rel=1e-10)


def test_hedge_json_is_consistent(capsys, tmp_path):
    plot = tmp_path / "pnl.png"
    out = _run_json(capsys, ["hedge", "--paths", "2000", "--steps", "50", "--cost", "0.001",
                             "--json", "--plot", str(plot)])
    res = out["results"]
    assert res["n_paths"] == 2000
    assert res["mean"] == pytest.approx(res["mean_hedge_error"] - res["mean_cost"], abs=1e-4)
    assert 0.9 < res["hedge_effectiveness"] <= 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left nothing behind


def test_hedge_table_output(capsys):
    assert cli.main(["hedge", "--paths", "500", "--steps", "10", "--strategy", "none"]) == 0
    text = capsys.readouterr().out
    assert "hedge effectiveness" in text and "mean cost" in text


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["hedge", "--paths", "0"], "--paths"),
        (["hedge", "--steps", "-3"], "--steps"),
        (["hedge", "--vol", "-0.2"], "vol"),
        (["hedge", "--vol", "nan"], "vol"),
        (["hedge", "--cost", "-0.001"], "--cost"),
        (["hedge", "--spread", "-1"], "--spread"),
        (["hedge", "--strategy", "band", "--width", "-1"], "width"),
        (["hedge", "--strategy", "magic"], "strategy"),
        (["price", "--maturity", "0"], "maturity"),
        (["hedge", "--bogus"], "bogus"),
        (["hedge", "--paths", "many"], "paths"),
    ],
)
def test_bad_input_is_one_line_and_status_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hedgejax: error:")
    assert needle in err


def test_console_script_runs_as_a_process():
    """The installed entry point: exit status 2 and a single line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "hedgejax.cli", "hedge", "--vol", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_price_of_path_dependent_instruments_from_the_command_line(capsys, x64):
    """Knock-in + knock-out = the vanilla call (closed form written above); a variance swap
    struck at the vol is worth 0; a floating lookback call is worth more than the ATM call."""
    base = ["price", "--option", "barrier", "--barrier", "90", "--rebate", "0", "--x64",
            "--json", "--rate", "0.02"]
    out_ = _run_json(capsys, [*base, "--kind", "down-and-out"])["results"]["price"]
    in_ = _run_json(capsys, [*base, "--kind", "down-and-in"])["results"]["price"]
    assert out_ + in_ == pytest.approx(_bs_call(100, 100, 1.0, 0.2, 0.02, 0.0), rel=1e-10)
    swap = _run_json(capsys, ["price", "--option", "variance-swap", "--strike-vol", "0.2",
                              "--x64", "--json"])["results"]["price"]
    assert swap == pytest.approx(0.0, abs=1e-12)
    look = _run_json(capsys, ["price", "--option", "lookback", "--floating", "--x64",
                              "--json"])["results"]["price"]
    assert look > _bs_call(100, 100, 1.0, 0.2, 0.0, 0.0)
    greeks = _run_json(capsys, ["greeks", "--option", "asian", "--fixings", "12", "--x64",
                                "--json"])["results"]
    assert 0 < greeks["delta"] < 1 and greeks["gamma"] > 0


@pytest.mark.parametrize("argv, flag", [
    (["--option", "barrier", "--monitoring", "0"], "--monitoring"),
    (["--option", "barrier", "--barrier", "-5"], "--barrier"),
    (["--option", "forward-start", "--start", "2"], "--start"),
    (["--option", "one-touch", "--payout", "inf"], "--payout"),
])
def test_bad_path_dependent_flags_are_one_line_status_2(capsys, argv, flag):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["price", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0], err


def test_hedge_a_barrier_from_the_command_line(capsys):
    out = _run_json(capsys, ["hedge", "--option", "barrier", "--paths", "500", "--steps",
                             "20", "--json"])["results"]
    assert out["n_paths"] == 500 and 0.5 < out["hedge_effectiveness"] <= 1.0
