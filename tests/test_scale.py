"""Chunked and sharded runs: the same paths, the same results."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import hedgejax as hj

FIELDS = ("pnl", "hedge_error", "cost", "n_trades", "unhedged_pnl", "final_position",
          "terminal_spot")


def _run(n_paths=1000, **kwargs):
    model = hj.BlackScholes(100.0, 0.2, rate=0.01)
    book = hj.Book([hj.EuropeanCall(100.0, 1.0), hj.EuropeanPut(90.0, 0.5)], [2.0, -1.0])
    return hj.hedge(model, book, hj.BandHedge(0.05), hj.Proportional(0.001) + hj.Fixed(0.01),
                    hj.TimeGrid(1.0, 40), n_paths, jax.random.key(3), **kwargs)


@pytest.mark.parametrize("kwargs", [dict(chunk_size=300), dict(chunk_size=64),
                                    dict(chunk_size=999, block_size=128),
                                    dict(chunk_size=5000), dict(block_size=64)])
def test_chunks_and_blocks_are_bit_identical(kwargs):
    reference = _run()
    other = _run(**kwargs)
    for field in FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(other, field)),
                                      np.asarray(getattr(reference, field)), err_msg=field)
    assert float(other.initial_price) == float(reference.initial_price)


def test_chunked_run_with_progress_bar():
    assert _run(n_paths=256, chunk_size=100, progress=True).pnl.shape == (256,)


def test_bad_chunk_and_device_arguments():
    with pytest.raises(ValueError, match="chunk_size"):
        _run(chunk_size=0)
    with pytest.raises(ValueError, match="devices"):
        _run(devices=jax.local_device_count() + 1)


SHARDED = """
import json, jax, numpy as np, hedgejax as hj
assert jax.local_device_count() == 4
model = hj.BlackScholes(100.0, 0.2)
call = hj.EuropeanCall(100.0, 1.0)
out = {}
for devices in (1, 4):
    res = hj.hedge(model, call, hj.DeltaHedge(), hj.Proportional(0.001), hj.TimeGrid(1.0, 30),
                   1000, jax.random.key(0), devices=devices)
    out[devices] = {f: np.asarray(getattr(res, f)).tolist() for f in ("pnl", "terminal_spot")}
print(json.dumps(out))
"""


def test_four_host_devices_see_the_same_paths():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    one, four = out["1"], out["4"]
    np.testing.assert_array_equal(one["terminal_spot"], four["terminal_spot"])
    # Different per-device compilation: equal to float32 rounding, not bit for bit.
    np.testing.assert_allclose(four["pnl"], one["pnl"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk_size", [257, 1000, 4096])
def test_stream_summary_equals_the_in_memory_summary(x64, chunk_size):
    model = hj.BlackScholes(100.0, 0.2, rate=0.01)
    call = hj.EuropeanCall(100.0, 1.0)
    args = (model, call, hj.BandHedge(0.05), hj.Proportional(0.001), hj.TimeGrid(1.0, 30),
            3000, jax.random.key(8))
    expected = hj.summary(hj.hedge(*args), alpha=0.99)
    streamed = hj.stream_summary(*args, chunk_size=chunk_size, alpha=0.99)
    assert streamed.keys() == expected.keys()
    for name, value in expected.items():
        assert streamed[name] == pytest.approx(value, rel=1e-10, abs=1e-12), name


@pytest.mark.parametrize("alpha", [0.9, 0.975, 0.999])
def test_stream_tail_is_exact_for_other_confidences(x64, alpha):
    args = (hj.BlackScholes(100.0, 0.25), hj.EuropeanPut(95.0, 0.5), hj.DeltaHedge(every=3),
            hj.Spread(0.01), hj.TimeGrid(0.5, 20), 2000, jax.random.key(2))
    res = hj.hedge(*args)
    streamed = hj.stream_summary(*args, chunk_size=300, alpha=alpha)
    assert streamed["var"] == pytest.approx(float(hj.risk.var(res.pnl, alpha)), rel=1e-12)
    assert streamed["es"] == pytest.approx(float(hj.risk.expected_shortfall(res.pnl, alpha)),
                                           rel=1e-12)


MEMORY = """
import resource, sys, jax, hedgejax as hj
n = int(sys.argv[1])
hj.stream_summary(hj.BlackScholes(100.0, 0.2), hj.EuropeanCall(100.0, 1.0), hj.DeltaHedge(),
                  hj.Proportional(0.001), hj.TimeGrid(1.0, 8), n, jax.random.key(0),
                  chunk_size=2**14)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def test_streaming_memory_does_not_grow_with_paths():
    """16x more paths, same chunk: peak RSS grows by no more than the kept tail and noise
    (the per-path arrays of 2^20 paths alone would be ~28 MB)."""
    peaks = []
    for n in (2**16, 2**20):
        proc = subprocess.run([sys.executable, "-c", MEMORY, str(n)], capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        peaks.append(float(proc.stdout.strip().splitlines()[-1]))
    assert peaks[1] - peaks[0] < 15.0, peaks
