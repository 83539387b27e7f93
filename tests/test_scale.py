"""Chunked and sharded runs: the same paths, the same results."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import hedgejax as hj

# minutes of compiling and subprocesses: the slow tier (`pytest -m slow`, run by CI)
pytestmark = pytest.mark.slow

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
model = hj.BlackScholes(100.0, 0.2, rate=0.01)
book = hj.Book([hj.EuropeanCall(100.0, 1.0), hj.EuropeanPut(90.0, 0.5)], [2.0, -1.0])
fields = ("pnl", "hedge_error", "cost", "n_trades", "final_position", "terminal_spot")
out = {}
for n in (1000, 1024):
    for name, kw in [("1", {}), ("2", dict(devices=2)), ("3", dict(devices=3)),
                     ("4", dict(devices=4)), ("4c", dict(devices=4, chunk_size=300)),
                     ("c64", dict(chunk_size=64)), ("c700", dict(chunk_size=700))]:
        res = hj.hedge(model, book, hj.BandHedge(0.05),
                       hj.Proportional(0.001) + hj.Fixed(0.01), hj.TimeGrid(1.0, 30), n,
                       jax.random.key(0), **kw)
        out[f"{n}/{name}"] = {f: np.asarray(getattr(res, f)).tolist() for f in fields}
        out[f"{n}/{name}"]["devices"] = len(res.pnl.sharding.device_set)
print(json.dumps(out))
"""


def test_devices_and_chunks_give_bit_identical_paths():
    """1, 2, 3 and 4 host devices, with and without chunks: the same per-path results bit
    for bit (each device runs the single-device program on its slice of global paths)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for n in (1000, 1024):
        reference = out[f"{n}/1"]
        for name in ("2", "3", "4", "4c", "c64", "c700"):
            for field in reference:
                if field != "devices":
                    np.testing.assert_array_equal(out[f"{n}/{name}"][field], reference[field],
                                                  err_msg=f"{n} paths, {name}: {field}")
    # 1024 paths tile four devices: the result stays sharded over them
    assert out["1024/4"]["devices"] == 4 and out["1024/1"]["devices"] == 1


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


MULTIPROCESS = """
import json, sys, jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
port, pid = sys.argv[1], int(sys.argv[2])
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=pid)
import jax.numpy as jnp, numpy as np, hedgejax as hj
assert jax.process_count() == 2 and jax.local_device_count() == 2
model = hj.BlackScholes(100.0, 0.2, rate=0.01)
res = hj.hedge(model, hj.EuropeanCall(100.0, 1.0), hj.BandHedge(0.05),
               hj.Proportional(0.001), hj.TimeGrid(1.0, 30), 1024, jax.random.key(0),
               devices=2)
total = float(jax.jit(jnp.sum)(res.pnl))  # a collective over both processes
shards = {int(s.index[0].start): np.asarray(s.data).tolist() for s in res.pnl.addressable_shards}
print(json.dumps({"total": total, "shards": shards}))
"""


def test_two_processes_share_the_paths_bit_for_bit(tmp_path):
    """`jax.distributed` with 2 processes x 2 CPU devices: each process computes its own
    quarter-slices of the global paths; together they equal a single-process run bit for
    bit, and a jitted reduction over the global array sees all 1024 paths."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = [subprocess.Popen([sys.executable, "-c", MULTIPROCESS, str(port), str(pid)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for pid in (0, 1)]
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-2000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    model = hj.BlackScholes(100.0, 0.2, rate=0.01)
    single = np.asarray(hj.hedge(model, hj.EuropeanCall(100.0, 1.0), hj.BandHedge(0.05),
                                 hj.Proportional(0.001), hj.TimeGrid(1.0, 30), 1024,
                                 jax.random.key(0)).pnl)
    shards = {int(k): v for out in outs for k, v in out["shards"].items()}
    assert sorted(shards) == [0, 256, 512, 768]
    for start, values in shards.items():
        np.testing.assert_array_equal(values, single[start:start + 256])
    for out in outs:
        assert out["total"] == pytest.approx(float(np.sum(single)), rel=1e-5)
