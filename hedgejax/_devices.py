"""How many devices hedgejax uses when the caller does not say.

On a CPU, jax makes one device by default, and XLA's own threading of hedgejax's hedging
loop uses a second core poorly; one device per core, each running its own slice of the
paths in its own thread (`hedge(devices=N)`), is about 1.5-1.9x faster on 2 cores
(experiments/results/PERF.md). The number of CPU devices is fixed when jax starts its
backend, so `configure_cpu_devices()` runs at `import hedgejax` and asks jax for one CPU
device per usable core, unless jax is already running or the user has chosen:

- `XLA_FLAGS=--xla_force_host_platform_device_count=N`, `JAX_NUM_CPU_DEVICES=N` or
  `jax.config.update("jax_num_cpu_devices", N)` before importing hedgejax: jax's own
  settings, left as they are;
- `HEDGEJAX_CPU_DEVICES=N`: N CPU devices (1: leave jax's single CPU device).

Only the CPU backend's device count changes: a GPU or TPU backend is untouched, and
`default_device_count()` uses one accelerator there.
"""

from __future__ import annotations

import operator
import os
import warnings
from collections.abc import Mapping
from typing import Any

import jax

from ._validate import is_concrete

ENV_VAR = "HEDGEJAX_CPU_DEVICES"
# At most this many CPU devices without HEDGEJAX_CPU_DEVICES: every device compiles its own
# copy of a program on its first call (in parallel, one thread each) and gets 1/N of the
# paths, so past a few cores more devices add compile work and per-call overhead faster
# than they add speed; 8 keeps a large machine's first calls cheap.
MAX_AUTO_CPU_DEVICES = 8
# `hedge(devices=None)` gives every device at least this many path-steps (n_paths x n_steps
# of one call; see default_device_count). Measured on 2 cores, W1 (delta hedge of a call,
# 252 steps, jax 0.10.2, median of 5 steady-state calls), 2 devices against 1: 2^14 paths
# 1.21x, 2^15 1.41x, 2^16 1.59x, 2^18 1.47x; the second device's compilation (about 1.5 s
# once) is then repaid within a few calls. So two devices from 2^15 paths x 252 steps.
MIN_PATH_STEPS_PER_DEVICE = 4_000_000
_FLAG = "--xla_force_host_platform_device_count"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def cpu_device_request(environ: Mapping[str, str], jax_setting: int | None,
                       cores: int) -> int | None:
    """The CPU device count to ask jax for, or None to leave jax's choice: None when the
    user chose through jax (`--xla_force_host_platform_device_count` in XLA_FLAGS, or
    `jax_setting`, the `jax_num_cpu_devices` option, >= 0; None: an option this jax lacks);
    else HEDGEJAX_CPU_DEVICES when set (a bad value warns and is ignored), else `cores` up
    to MAX_AUTO_CPU_DEVICES. None rather than 1: one device is jax's default."""
    if jax_setting is None or jax_setting >= 0 or _FLAG in environ.get("XLA_FLAGS", ""):
        return None
    count = min(cores, MAX_AUTO_CPU_DEVICES)
    text = environ.get(ENV_VAR, "").strip()
    if text:
        try:
            count = int(text)
        except ValueError:
            count = 0
        if count < 1:
            warnings.warn(f"{ENV_VAR} must be a whole number >= 1, got {text!r}; ignored",
                          RuntimeWarning, stacklevel=4)
            count = min(cores, MAX_AUTO_CPU_DEVICES)
    return count if count > 1 else None


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return False    # an unknown jax: the config's own check below refuses if too late


def _distributed() -> bool:
    try:
        from jax._src import distributed

        return distributed.global_state.client is not None
    except (ImportError, AttributeError):
        return False


def configure_cpu_devices() -> int | None:
    """Ask jax for one CPU device per usable core (at most MAX_AUTO_CPU_DEVICES), or for
    HEDGEJAX_CPU_DEVICES of them. Does nothing, silently, when jax's backend is already
    running, when the user set the count through jax (XLA_FLAGS, JAX_NUM_CPU_DEVICES or
    `jax_num_cpu_devices`), or after `jax.distributed.initialize()` (the processes of a
    multi-process run keep the layout they were started with). Returns the count set, or
    None when nothing was set."""
    if _backends_started() or _distributed():
        return None
    count = cpu_device_request(os.environ, getattr(jax.config, "jax_num_cpu_devices", None),
                               usable_cores())
    if count is None:
        return None
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except (RuntimeError, AttributeError, ValueError):
        return None     # too late after all (the backend started meanwhile) or no such option
    return count


def default_device_count(n_paths: int, n_steps: int, inputs: Any = None,
                         chunk_size: Any = None) -> int:
    """How many local devices `hedge(devices=None)` uses for `n_paths` x `n_steps`
    path-steps (per chunk of `chunk_size` paths when that is a whole number >= 1; a bad one
    is for the caller to refuse): as many CPU devices as get MIN_PATH_STEPS_PER_DEVICE each,
    at least 1 (each extra device compiles the program once more and costs a thread per
    call, which only a large run repays). 1 on a GPU or TPU (one accelerator), in a
    multi-process run, and when any array in `inputs` (the call's model, book, strategy,
    costs, key, ...) is traced: under `jax.jit`, `vmap` or `grad` the devices' slices would
    run one after another."""
    if jax.process_count() > 1 or jax.default_backend() != "cpu":
        return 1
    if not all(is_concrete(x) for x in jax.tree.leaves(inputs)):
        return 1
    paths = int(n_paths)
    try:
        chunk = operator.index(chunk_size)
    except TypeError:       # None, or not a whole number
        chunk = 0
    if chunk >= 1 and not isinstance(chunk_size, bool):
        paths = min(paths, chunk)
    share = paths * int(n_steps) // MIN_PATH_STEPS_PER_DEVICE
    return max(1, min(jax.local_device_count(), share))
