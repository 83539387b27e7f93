"""The CPU device count set at `import hedgejax`, and how many devices `hedge()` uses by
default (hedgejax/_devices.py)."""

import os
import subprocess
import sys

import jax
import pytest

import hedgejax as hj
from hedgejax import _devices
from hedgejax._devices import (
    ENV_VAR,
    MAX_AUTO_CPU_DEVICES,
    configure_cpu_devices,
    cpu_device_request,
    default_device_count,
    usable_cores,
)

# jax's and hedgejax's own device-count settings, removed for a "fresh" process
_SETTINGS = ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", ENV_VAR)
_COUNT = "import hedgejax, jax; print(len(jax.devices('cpu')))"


def _count_in_fresh_process(code: str, **env: str) -> int:
    """The last number `code` prints, run in a new Python (CPU only, warnings as errors)."""
    clean = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code],
                          env={**clean, "JAX_PLATFORMS": "cpu", **env}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == "", proc.stderr      # no warning
    return int(proc.stdout.split()[-1])


def test_import_gives_one_cpu_device_per_core():
    count = _count_in_fresh_process(_COUNT)
    assert count == min(usable_cores(), MAX_AUTO_CPU_DEVICES)


def test_env_var_one_keeps_a_single_device():
    assert _count_in_fresh_process(_COUNT, **{ENV_VAR: "1"}) == 1


def test_jax_started_first_is_left_alone():
    """jax ran a computation before hedgejax was imported: too late to change the device
    count, so hedgejax leaves it, without an error or a warning (-W error)."""
    code = ("import jax, jax.numpy as jnp; jnp.ones(3).sum().block_until_ready(); "
            "import hedgejax; from hedgejax._devices import configure_cpu_devices; "
            "assert configure_cpu_devices() is None; print(len(jax.devices('cpu')))")
    assert _count_in_fresh_process(code) == 1


def test_request_rules():
    unset = -1      # jax_num_cpu_devices when the user did not set it
    assert cpu_device_request({}, unset, 2) == 2
    assert cpu_device_request({}, unset, 64) == MAX_AUTO_CPU_DEVICES
    assert cpu_device_request({}, unset, 1) is None
    # the user chose through jax: left alone, whatever HEDGEJAX_CPU_DEVICES says
    assert cpu_device_request({}, 3, 16) is None
    assert cpu_device_request({}, None, 16) is None      # a jax without the option
    flags = {"XLA_FLAGS": "--xla_cpu_foo=1 --xla_force_host_platform_device_count=4",
             ENV_VAR: "3"}
    assert cpu_device_request(flags, unset, 16) is None
    assert cpu_device_request({"XLA_FLAGS": "--xla_cpu_foo=1"}, unset, 2) == 2
    # HEDGEJAX_CPU_DEVICES: any count (not capped), 1 for one device
    assert cpu_device_request({ENV_VAR: "12"}, unset, 2) == 12
    assert cpu_device_request({ENV_VAR: " 1 "}, unset, 16) is None
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.warns(RuntimeWarning, match=ENV_VAR):
            assert cpu_device_request({ENV_VAR: bad}, unset, 2) == 2


def test_configure_after_jax_started_does_nothing():
    jax.numpy.ones(2).block_until_ready()
    assert configure_cpu_devices() is None


def _expected(path_steps: int) -> int:
    """Every local CPU device that gets MIN_PATH_STEPS_PER_DEVICE (1 off the CPU)."""
    if jax.default_backend() != "cpu":
        return 1
    share = path_steps // _devices.MIN_PATH_STEPS_PER_DEVICE
    return max(1, min(jax.local_device_count(), share))


def test_default_device_count_small_and_large():
    assert default_device_count(1000, 252) == 1
    assert default_device_count(2**14, 252) == 1        # 4.1 million path-steps
    assert default_device_count(2**20, 252) == _expected(2**20 * 252)
    n = _devices.MIN_PATH_STEPS_PER_DEVICE * 2
    assert default_device_count(n, 1) == _expected(n) <= 2
    if jax.default_backend() == "cpu" and jax.local_device_count() > 1:
        assert default_device_count(2**20, 252) > 1
    # chunked: the work of one chunk counts (a bad chunk size is the caller's to refuse)
    assert default_device_count(2**20, 252, chunk_size=2**12) == 1
    assert default_device_count(2**20, 252, chunk_size=2**30) == _expected(2**20 * 252)
    for bad in (0, -5, 2.5, True, "x"):
        assert default_device_count(2**20, 252, chunk_size=bad) == _expected(2**20 * 252)


def test_default_device_count_is_one_when_traced_or_not_on_cpu(monkeypatch):
    model = hj.BlackScholes(100.0, 0.2)
    seen = []

    def f(vol):
        seen.append(default_device_count(2**20, 252, (model.replace(vol=vol),
                                                      jax.random.key(0))))
        return vol

    jax.jit(f)(0.2)
    assert seen == [1]
    concrete = default_device_count(2**20, 252, (model, jax.random.key(0)))
    assert concrete == _expected(2**20 * 252)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert default_device_count(2**24, 252) == 1
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert default_device_count(2**24, 252) == 1
