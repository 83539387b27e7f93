"""Benchmark W5: deep-hedging training, hedgejax against pfhedge in the same run.

pfhedge's flagship set-up (its README; experiments/baselines/pfhedge_w5.py): the hedger is
short one European call, S0 = K = 1 (pfhedge's convention: money in units of S0), in a
Black-Scholes world with sigma = 0.2, r = 0, hedged at 20 steps over 20/250 years with
proportional costs of 1e-3 (case "call") or none ("call-nocost"); a second book is a short
fixed-strike lookback call (K = 1, maximum over the 21 grid prices; case "lookback", costs
1e-3). The policy is an MLP of 4 hidden layers of 32 units on pfhedge's features
(log-moneyness, time to maturity, volatility, previous hedge; the lookback adds
log(max S / K)), trained with Adam on entropic risk (aversion 1) of the terminal P&L with
fresh paths every step (2^15 per step).

- pfhedge: `Hedger(MultiLayerPerceptron(n_layers=4, n_units=32), features)` (ReLU, its
  default), Adam lr 1e-3 (its default), `--steps` optimisation steps (200, its example's
  `n_epochs`).
- hedgejax: `hj.NeuralHedge(key, hidden=32, depth=4, features=...)` (tanh), with the same
  features through `hj.features` where that module exists (else NeuralHedge's default
  features; the report says which): positions = -delta + MLP (residual around Black-Scholes
  delta hedging, NeuralHedge's default, so the untrained policy is delta hedging), Adam on
  a warm-up + cosine schedule (`--hj-lr`, peak 1e-3 by default), the same number of steps.
- hedgejax-direct: the same with `residual=False` (positions = MLP, pfhedge's
  parametrisation; the untrained policy, whose output layer is zero, holds nothing).

One hedgejax step is what `hj.fit` compiles per step (`eqx.filter_value_and_grad` of the
objective through `hj.hedge`, then the optax update), run here in its own loop so that
parameter snapshots can be kept for evaluation; the objective is entropic(pnl + V0),
pfhedge's loss exactly (hedgejax's P&L includes the premium V0 received for the short book;
entropic risk is cash-additive, so adding V0 back changes no gradient).

Measured per case and implementation, each in its own child process (so that peak RSS is
its own): the time of every optimisation step (the first includes hedgejax's compilation:
`compile s` = first step minus the median of the others), parameter snapshots every
`--eval-every` steps, evaluated after training on the same 2^18 held-out paths for both
(exact GBM paths drawn with NumPy from `--seed`; hedgejax replays them with
`hj.HistoricalPaths`, pfhedge gets them as its underlier's spot): held-out loss = entropic
risk of pfhedge's P&L convention, in float64. `to target` is the training wall time (sum
of step times, compilation included, evaluation excluded) until the first snapshot whose
held-out loss is <= pfhedge's final held-out loss; for pfhedge itself the same with its own
final loss (at most its whole run). The final losses are compared on the same paths with a
paired standard error (delta method on the entropic risk's influence function
psi(x) = (exp(-a x) / E exp(-a X) - 1) / a).

Flops of one step (`flops`): the MLP's matrix products only (activations, features, the
simulation and the Greeks not counted): per path and step a forward pass costs
2 (n_in h + (depth - 1) h^2 + h) flops, the backward pass twice that less the first layer's
input gradient (2 n_in h); times paths x steps. hedgejax's two-level checkpointing
recomputes the forward pass twice more (`executed`). The fraction of the bound divides the
achieved rate (useful flops / median step time) by this CPU's rate on a 4096 x 4096 float32
matrix product and on a (paths x steps, 32) @ (32, 32) product followed by tanh, measured
in jax in the same run.

Profile (`--profile`, hedgejax, case "call"): the step and variants of it, each in its own
process (module flags are read when a step is traced): forward only, without per-step
checkpointing (`hedgejax._hedge.CHECKPOINT_STEP = False`), without the delta residual
(`residual=False`: the Black-Scholes Greeks are then dead code), ReLU instead of tanh,
DeltaHedge alone (the simulation, Greeks and costs without a network), and data parallel
over the local CPU devices (paths split, gradients averaged); plus a breakdown of one step
by XLA operation from a `jax.profiler` trace (forward / recomputation / backward x matrix
products / activations / bias-gradient reductions / other).

Run from the repository root with the bench environment (pfhedge installed)::

    /work/benchvenv/bin/python experiments/bench_w5.py        # -> experiments/results/
    python experiments/bench_w5.py --quick                     # smoke test -> runs/

pfhedge is skipped, with a note, where torch/pfhedge are not installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.util
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hedgejax._io import atomic_write_text  # noqa: E402
from hedgejax.cli import OneLineParser  # noqa: E402

DEFAULT_OUT = ROOT / "experiments" / "results" / "bench_w5.json"
QUICK_OUT = ROOT / "runs" / "bench_w5_quick.json"

SET_UP: dict[str, Any] = {
    "spot": 1.0, "strike": 1.0, "sigma": 0.2, "rate": 0.0, "maturity": 20 / 250,
    "n_steps": 20, "aversion": 1.0, "hidden": 32, "depth": 4,
}
CASES: dict[str, dict[str, Any]] = {
    "call": {"kind": "call", "cost": 1e-3},
    "call-nocost": {"kind": "call", "cost": 0.0},
    "lookback": {"kind": "lookback", "cost": 1e-3},
}
IMPLS = ("pfhedge", "hedgejax", "hedgejax-direct")
PROFILE_VARIANTS = ("step", "forward", "no-checkpoint", "one-level-checkpoint",
                    "save-dots", "no-residual", "relu", "deltahedge", "data-parallel",
                    "data-parallel+one-level-checkpoint+relu")
QUICK = {"steps": 4, "log2_paths": 10, "log2_eval": 12, "eval_every": 2,
         "cases": ["call"], "profile": ["step"], "bound_rows": 1 << 14,
         "matmul": 512}


def pfhedge_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "pfhedge", "tqdm"))


# --- shared arithmetic ----------------------------------------------------------------------


def heldout_paths(n_paths: int, seed: int) -> np.ndarray:
    """Exact GBM paths S_0 = 1, ..., S_20 (n_paths, 21), float32: log-increments
    -sigma^2 dt / 2 + sigma sqrt(dt) Z in float64 (what pfhedge's BrownianStock draws)."""
    s, n = SET_UP, SET_UP["n_steps"]
    dt_ = s["maturity"] / n
    z = np.random.default_rng(seed).standard_normal((n_paths, n))
    log_s = np.cumsum(-0.5 * s["sigma"] ** 2 * dt_ + s["sigma"] * math.sqrt(dt_) * z, axis=1)
    out = np.empty((n_paths, n + 1), dtype=np.float64)
    out[:, 0] = s["spot"]
    out[:, 1:] = s["spot"] * np.exp(log_s)
    return out.astype(np.float32)


def entropic(pl: np.ndarray, a: float = 1.0) -> float:
    """(1/a) log E exp(-a pl), in float64 (pfhedge's EntropicRiskMeasure)."""
    x = -a * np.asarray(pl, dtype=np.float64)
    m = x.max()
    return float((m + math.log(np.mean(np.exp(x - m)))) / a)


def influence(pl: np.ndarray, a: float = 1.0) -> np.ndarray:
    """Influence function of the entropic risk at each outcome (delta method)."""
    x = -a * np.asarray(pl, dtype=np.float64)
    w = np.exp(x - x.max())
    return (w / w.mean() - 1.0) / a


def paired_se(pl_a: np.ndarray, pl_b: np.ndarray, a: float = 1.0) -> float:
    """Standard error of entropic(pl_a) - entropic(pl_b) on the same paths."""
    d = influence(pl_a, a) - influence(pl_b, a)
    return float(np.std(d, ddof=1) / math.sqrt(d.size))


def mlp_flops(n_in: int, hidden: int, depth: int, rows: int) -> dict[str, float]:
    """Flops of the MLP's matrix products for `rows` evaluations (path-steps)."""
    fwd = 2 * (n_in * hidden + (depth - 1) * hidden * hidden + hidden)
    bwd = 2 * fwd - 2 * n_in * hidden      # weight gradients + input gradients (not layer 1)
    return {"forward_per_row": fwd, "backward_per_row": bwd,
            "useful": float(rows * (fwd + bwd)),
            "executed_two_level_checkpoint": float(rows * (3 * fwd + bwd))}


def _peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def _time_to(losses: list[tuple[int, float]], times: list[float],
             target: float | None) -> tuple[int | None, float | None]:
    """(steps, training seconds) at the first snapshot with loss <= target."""
    if target is None:
        return None, None
    for step, loss in losses:
        if loss <= target:
            return step, float(sum(times[:step]))
    return None, None


# --- hedgejax -------------------------------------------------------------------------------


def pfhedge_volatility(obs, position):
    """pfhedge's "volatility" feature in a Black-Scholes world: the constant sigma."""
    import jax.numpy as jnp

    return jnp.full_like(obs.spot, SET_UP["sigma"])


def hj_problem(kind: str, cost: float, seed: int, residual: bool = True) -> dict[str, Any]:
    """hedgejax's model, book, grid, costs and policy for a case (`residual=False`: the
    network's output is the whole position, pfhedge's parametrisation)."""
    import jax

    import hedgejax as hj

    s = SET_UP
    model = hj.BlackScholes(s["spot"], s["sigma"], rate=s["rate"])
    if kind == "call":
        book = hj.Book([hj.EuropeanCall(s["strike"], s["maturity"])], [-1.0])
    else:
        book = hj.Book([hj.Lookback(s["maturity"], strike=s["strike"],
                                    monitoring=s["n_steps"])], [-1.0])
    grid = hj.TimeGrid(s["maturity"], s["n_steps"])
    costs = hj.Proportional(cost)
    key = jax.random.key(seed)
    features, described = None, ("hedgejax's default: log-moneyness, sqrt(time to maturity), "
                                 "position, delta")
    try:
        from hedgejax import features as F
    except ImportError:
        F = None
    kwargs: dict[str, Any] = {}
    if F is not None:
        features = [F.log_moneyness(s["strike"])]
        names = ["log_moneyness"]
        if kind == "lookback":
            features.append(F.running_max(relative_to="strike"))
            names.append("max_log_moneyness")
        features += [F.time_to_maturity, pfhedge_volatility, F.position(1.0)]
        names += ["time_to_maturity", "volatility (constant sigma)", "prev_hedge (position)"]
        kwargs["features"] = tuple(features)
        described = "pfhedge's, through hj.features: " + ", ".join(names)
    if not residual:
        kwargs["residual"] = False
    policy = hj.NeuralHedge(key, hidden=s["hidden"], depth=s["depth"], reference=s["strike"],
                            **kwargs)
    return {"model": model, "book": book, "grid": grid, "costs": costs, "policy": policy,
            "features": described}


def _objective(result):
    import hedgejax as hj

    # pfhedge's loss. hedgejax's P&L of the short book includes the premium received: its V0
    # (`initial_price`) is -C, so pnl = pl + C, and pnl + V0 = pl, pfhedge's P&L.
    return hj.risk.entropic(result.pnl + result.initial_price, SET_UP["aversion"])


def hj_optimizer(lr: float, steps: int):
    import optax

    warmup = max(1, steps // 20)
    schedule = optax.warmup_cosine_decay_schedule(lr / 10, lr, warmup, max(steps, warmup + 1),
                                                  end_value=lr / 10)
    return optax.adam(schedule)


def hj_train_step(problem: dict[str, Any], n_paths: int, optimizer,
                  block_size: int | None = None):
    """(params, static, opt_state, step, loss): `hj.fit`'s compiled step, on its own
    (`block_size`: hedge()'s paths per block; None its default)."""
    import equinox as eqx

    import hedgejax as hj

    p = problem
    params, static = eqx.partition(p["policy"], eqx.is_inexact_array)
    opt_state = optimizer.init(params)

    blocks = {} if block_size is None else {"block_size": block_size}

    def loss_of(q, key):
        res = hj.hedge(p["model"], p["book"], eqx.combine(q, static), p["costs"], p["grid"],
                       n_paths, key, **blocks)
        return _objective(res)

    @eqx.filter_jit
    def step(q, state, key):
        loss, grads = eqx.filter_value_and_grad(loss_of)(q, key)
        updates, state = optimizer.update(grads, state, q)
        return eqx.apply_updates(q, updates), state, loss

    return params, static, opt_state, step, loss_of


def hj_heldout(problem: dict[str, Any], spots: np.ndarray):
    """A function params -> per-path P&L (pfhedge's convention) on the held-out paths."""
    import equinox as eqx
    import jax

    import hedgejax as hj

    p = problem
    world = hj.HistoricalPaths(spots, rate=SET_UP["rate"], spot=SET_UP["spot"])
    static = eqx.partition(p["policy"], eqx.is_inexact_array)[1]

    def pl(params) -> np.ndarray:
        res = hj.hedge(world, p["book"], eqx.combine(params, static), p["costs"], p["grid"],
                       spots.shape[0], jax.random.key(0), hedge_model=p["model"])
        return np.asarray(res.pnl, np.float64) + float(res.initial_price)

    return pl


def worker_hedgejax(impl: str, case: str, args: argparse.Namespace) -> dict[str, Any]:
    import jax

    c = CASES[case]
    problem = hj_problem(c["kind"], c["cost"], args.seed, residual=impl == "hedgejax")
    n_paths = 1 << args.log2_paths
    optimizer = hj_optimizer(args.hj_lr, args.steps)
    params, _, state, step, _ = hj_train_step(problem, n_paths, optimizer)
    base_key = jax.random.key(args.seed + 1)
    times: list[float] = []
    snapshots = [(0, params)]
    train_losses = []
    for i in range(args.steps):
        t0 = time.perf_counter()
        params, state, loss = step(params, state, jax.random.fold_in(base_key, i))
        train_losses.append(float(loss))        # a host sync, as hj.fit's logging
        times.append(time.perf_counter() - t0)
        if (i + 1) % args.eval_every == 0 or i + 1 == args.steps:
            snapshots.append((i + 1, params))
    peak_train = _peak_rss_mib()
    spots = np.load(args.heldout)
    pl_of = hj_heldout(problem, spots)
    t0 = time.perf_counter()
    curve = []
    final_pl = None
    for k, snap in snapshots:
        pl = pl_of(snap)
        curve.append((k, entropic(pl, SET_UP["aversion"])))
        final_pl = pl
    eval_s = time.perf_counter() - t0
    np.save(args.pl_out, final_pl)
    steady = times[1:] or times
    median = statistics.median(steady)
    to_steps, to_s = _time_to(curve, times, args.target)
    return {"impl": impl, "case": case, "features": problem["features"],
            "residual": impl == "hedgejax", "activation": "tanh",
            "optimizer": f"adam, warm-up + cosine, peak lr {args.hj_lr:g}",
            "step_times_s": times, "median_step_s": median,
            "first_step_s": times[0], "compile_s": max(times[0] - median, 0.0),
            "train_s": float(sum(times)), "train_losses": train_losses,
            "curve": curve, "final_loss": curve[-1][1], "untrained_loss": curve[0][1],
            "target": args.target, "to_target_steps": to_steps, "to_target_s": to_s,
            "eval_s": eval_s, "n_evals": len(curve),
            "peak_rss_train_mib": peak_train, "peak_rss_mib": _peak_rss_mib(),
            "jax_backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "n_params": int(sum(x.size for x in jax.tree.leaves(params)))}


# --- pfhedge --------------------------------------------------------------------------------


def worker_pfhedge(case: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from experiments.baselines import pfhedge_w5 as pf

    torch.set_num_threads(os.cpu_count() or 1)
    c = CASES[case]
    s = SET_UP
    setup = pf.make(c["kind"], c["cost"], sigma=s["sigma"], maturity=s["maturity"],
                    dt=s["maturity"] / s["n_steps"], strike=s["strike"], seed=args.seed,
                    aversion=s["aversion"])
    n_paths = 1 << args.log2_paths
    times: list[float] = []
    snapshots = [(0, pf.snapshot(setup))]
    train_losses = []
    for i in range(args.steps):
        t0 = time.perf_counter()
        train_losses.append(pf.train_step(setup, n_paths))
        times.append(time.perf_counter() - t0)
        if (i + 1) % args.eval_every == 0 or i + 1 == args.steps:
            snapshots.append((i + 1, pf.snapshot(setup)))
    peak_train = _peak_rss_mib()
    spots = np.load(args.heldout)
    t0 = time.perf_counter()
    curve = []
    final_pl = None
    for k, snap in snapshots:
        pl = pf.heldout_pl(setup, spots, snap)
        curve.append((k, entropic(pl, s["aversion"])))
        final_pl = pl
    eval_s = time.perf_counter() - t0
    np.save(args.pl_out, final_pl)
    final = curve[-1][1]
    to_steps, to_s = _time_to(curve, times, final)
    return {"impl": "pfhedge", "case": case, "features": pf.FEATURES[c["kind"]],
            "activation": "relu", "optimizer": "adam, lr 1e-3",
            "step_times_s": times, "median_step_s": statistics.median(times),
            "first_step_s": times[0], "compile_s": None, "train_s": float(sum(times)),
            "train_losses": train_losses, "curve": curve, "final_loss": final,
            "untrained_loss": curve[0][1], "target": final, "to_target_steps": to_steps,
            "to_target_s": to_s, "eval_s": eval_s, "n_evals": len(curve),
            "peak_rss_train_mib": peak_train, "peak_rss_mib": _peak_rss_mib(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "pfhedge": importlib.import_module("pfhedge").__version__,
            "n_params": pf.n_params(setup)}


# --- bounds and profile (hedgejax) ----------------------------------------------------------


def _median_time(fn, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def worker_bounds(args: argparse.Namespace) -> dict[str, Any]:
    """This CPU's float32 matmul rate (n x n) and the MLP layer's rate, in jax."""
    import jax
    import jax.numpy as jnp

    n = args.matmul
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    mm = jax.jit(lambda x: x @ x)
    t_mm = _median_time(lambda: mm(a), 3)
    rows = args.bound_rows
    h = SET_UP["hidden"]
    x = jax.random.normal(jax.random.key(1), (rows, h), jnp.float32)
    w = jax.random.normal(jax.random.key(2), (h, h), jnp.float32) / h
    layer = jax.jit(lambda x, w: jnp.tanh(x @ w))
    t_layer = _median_time(lambda: layer(x, w), 5)
    plain = jax.jit(lambda x, w: x @ w)
    t_plain = _median_time(lambda: plain(x, w), 5)
    return {"matmul_n": n, "matmul_s": t_mm, "matmul_gflops": 2 * n ** 3 / t_mm / 1e9,
            "layer_rows": rows, "layer_tanh_s": t_layer,
            "layer_tanh_gflops": 2 * rows * h * h / t_layer / 1e9,
            "layer_s": t_plain, "layer_gflops": 2 * rows * h * h / t_plain / 1e9,
            "jax_backend": jax.default_backend()}


class _ReluNumpy:
    """jax.numpy with tanh replaced by relu (the profile's ReLU variant only)."""

    def __getattr__(self, name: str) -> Any:
        import jax
        import jax.numpy as jnp

        return jax.nn.relu if name == "tanh" else getattr(jnp, name)


class _JaxWithCheckpoint:
    """The jax module with `checkpoint` replaced (what hedgejax._hedge wraps each step in):
    identity (only the sqrt(n) segments of `_scan.checkpointed_scan` are checkpointed, one
    level) or a checkpoint that saves matrix products (`dots_saveable`)."""

    def __init__(self, mode: str):
        self.mode = mode

    def __getattr__(self, name: str) -> Any:
        import jax

        if name != "checkpoint":
            return getattr(jax, name)
        if self.mode == "identity":
            return lambda fn, **kwargs: fn
        return lambda fn, **kwargs: jax.checkpoint(
            fn, policy=jax.checkpoint_policies.dots_saveable, **kwargs)


def worker_profile(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """Median time of one optimisation step (or of a variant) for the case "call"."""
    import equinox as eqx
    import jax

    import hedgejax as hj
    import hedgejax._hedge as hedge_module

    parts = set(variant.split("+"))
    if "no-checkpoint" in parts:
        hedge_module.CHECKPOINT_STEP = False
    if "one-level-checkpoint" in parts:
        hedge_module.jax = _JaxWithCheckpoint("identity")
    if "save-dots" in parts:
        hedge_module.jax = _JaxWithCheckpoint("dots")
    if "relu" in parts:
        import hedgejax._strategies.neural as neural

        neural.jnp = _ReluNumpy()       # NeuralHedge's MLP reads jnp.tanh when traced
    c = CASES["call"]
    problem = hj_problem(c["kind"], c["cost"], args.seed,
                         residual="no-residual" not in parts)
    n_paths = 1 << args.log2_paths
    optimizer = hj_optimizer(args.hj_lr, 100)
    block = [int(b[5:]) for b in parts if b.startswith("block")]
    params, static, state, step, loss_of = hj_train_step(problem, n_paths, optimizer,
                                                         block[0] if block else None)
    key = jax.random.key(args.seed + 7)
    note = ""
    if variant == "forward":
        fwd = eqx.filter_jit(loss_of)
        fn = lambda: fwd(params, key)  # noqa: E731
    elif variant == "deltahedge":
        p = problem
        fn = lambda: hj.hedge(p["model"], p["book"], hj.DeltaHedge(), p["costs"],  # noqa: E731
                              p["grid"], n_paths, key, devices=1).pnl
    elif "data-parallel" in parts:
        n_dev = jax.local_device_count()
        if n_paths % (64 * n_dev):
            raise ValueError(f"{n_paths} paths do not split over {n_dev} devices")
        per = n_paths // n_dev

        def local(q, k):
            res = hj.hedge(problem["model"], problem["book"], eqx.combine(q, static),
                           problem["costs"], problem["grid"], per, k)
            return _objective(res)

        def grads(q, k):
            loss, g = eqx.filter_value_and_grad(local)(q, k)
            return jax.lax.pmean(loss, "d"), jax.lax.pmean(g, "d")

        pgrads = jax.pmap(grads, axis_name="d", in_axes=(None, 0))
        update = eqx.filter_jit(lambda q, s, g: optimizer.update(g, s, q))
        keys = jax.random.split(key, n_dev)

        def fn():
            loss, g = pgrads(params, keys)
            g = jax.tree.map(lambda x: x[0], g)
            return update(params, state, g)
        note = (f"{n_dev} devices, {per} paths each; entropic risk of each half averaged "
                "(an estimator of the same objective, not bit-identical to one device)")
    else:
        # compiled once, ahead of time, so that the trace below runs the same executable
        compiled = jax.jit(step).lower(params, state, key).compile()
        fn = lambda: compiled(params, state, key)  # noqa: E731
    if "relu" in parts and "tanh" in str(jax.make_jaxpr(loss_of)(params, key)):
        raise RuntimeError("the ReLU variant did not take effect (NeuralHedge no longer "
                           "reads jnp.tanh from its module)")
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    median = _median_time(fn, args.profile_repeats)
    out = {"variant": variant, "median_s": median, "first_s": first, "note": note,
           "n_paths": n_paths, "devices": jax.local_device_count(),
           "peak_rss_mib": _peak_rss_mib()}
    if variant == "step" and args.trace:
        try:
            out["breakdown"] = _trace_breakdown(compiled, params, state, key)
        except Exception as e:  # noqa: BLE001 - optional: the profiler's formats change
            out["breakdown_error"] = f"{type(e).__name__}: {e}"[:300]
    return out


def _trace_breakdown(compiled, params, state, key) -> dict[str, Any]:
    """Time of the compiled step's XLA operations (a jax.profiler trace of 2 steps),
    grouped by phase (forward, recomputation under checkpointing, backward) and kind
    (matrix products, activations, bias-gradient reductions, other), using the compiled
    HLO's op metadata to classify each operation."""
    import collections
    import gzip
    import shutil

    import jax

    info = {}
    for line in compiled.as_text().splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) (\w+)\(", line)
        if m:
            name, shape, op = m.groups()
            meta = re.search(r'op_name="([^"]*)"', line)
            info[name] = (shape, op, meta.group(1) if meta else "")
    for _ in range(2):
        jax.block_until_ready(compiled(params, state, key))
    folder = tempfile.mkdtemp(prefix="w5trace")
    n = 2
    try:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            for _ in range(n):
                jax.block_until_ready(compiled(params, state, key))
        found = list(Path(folder).rglob("perfetto_trace.json.gz"))
        if not found:
            raise FileNotFoundError("no perfetto trace written")
        with gzip.open(found[0]) as fh:
            data = json.load(fh)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    events = data["traceEvents"] if isinstance(data, dict) else data
    groups: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") != "X" or e.get("name") not in info:
            continue
        shape, op, meta = info[e["name"]]
        if op == "while" or e["name"].startswith("while"):
            continue
        phase = ("recompute" if "rematted" in meta else
                 "backward" if "transpose(" in meta else "forward")
        is_dot = op == "dot" or "ynn" in e["name"] or "dot_general" in meta
        dims = re.findall(r"\d+", shape.split("{")[0])
        small = len(dims) == 1 or (len(dims) == 2 and min(int(d) for d in dims) <= 1)
        kind = ("bias-gradient reduction" if "reduce_sum" in meta and len(dims) <= 1 else
                "matmul" if is_dot else
                "activation" if ("tanh" in e["name"] or "tanh" in meta) else
                "other (small)" if small else "other")
        groups[(phase, kind)] += e["dur"]
        threads[(e.get("pid"), e.get("tid"))] += e["dur"]
    total = sum(groups.values())
    if not total:
        raise ValueError("no XLA operations matched in the trace")
    rows = [{"phase": ph, "kind": k, "ms_per_step": t / n / 1e3, "share": t / total}
            for (ph, k), t in sorted(groups.items(), key=lambda kv: -kv[1])]
    busiest = max(threads.values()) / total if threads else None
    return {"ops_ms_per_step": total / n / 1e3, "rows": rows,
            "busiest_thread_share": busiest, "threads": len(threads)}


# --- orchestration --------------------------------------------------------------------------


_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


def _child(worker: list[str], args: argparse.Namespace, extra: Sequence[str] = (),
           env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *worker,
           "--steps", str(args.steps), "--log2-paths", str(args.log2_paths),
           "--eval-every", str(args.eval_every), "--seed", str(args.seed),
           "--hj-lr", repr(args.hj_lr), "--aversion", repr(args.aversion),
           "--profile-repeats", str(args.profile_repeats),
           "--bound-rows", str(args.bound_rows), "--matmul", str(args.matmul), *extra]
    if not args.trace:
        cmd.append("--no-trace")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                              cwd=ROOT, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if proc.returncode == 0:
                return data
    tail = [ln.rstrip() for ln in proc.stderr.splitlines() if ln.strip()]
    exc = [ln for ln in tail if _EXC_LINE.match(ln)]
    msg = (exc or tail or [f"worker exited with status {proc.returncode}"])[-1]
    return {"error": msg[:500], "stderr_tail": tail[-30:]}


def _machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "cpu_model": None,
                            "cpu_count": os.cpu_count(), "python": platform.python_version(),
                            "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import jax

        import hedgejax

        info.update(jax=jax.__version__, jax_backend=jax.default_backend(),
                    jax_devices=[str(d) for d in jax.devices()],
                    hedgejax=getattr(hedgejax, "__version__", "unknown"))
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        info["jax"] = f"unavailable: {type(e).__name__}: {e}"
    for mod in ("torch", "pfhedge", "optax", "equinox"):
        try:
            info[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001 - optional
            info[mod] = None
    return info


def _compare(rows: dict[str, dict[str, Any]], pls: dict[str, Path]) -> dict[str, Any]:
    """pfhedge / hedgejax ratios and the paired loss difference, for one case and each
    hedgejax implementation."""
    pf = rows.get("pfhedge")
    out: dict[str, Any] = {}
    if not pf or pf.get("error"):
        return out
    for impl in IMPLS[1:]:
        hj = rows.get(impl)
        if not hj or hj.get("error"):
            continue
        c: dict[str, Any] = {
            "per_step": pf["median_step_s"] / hj["median_step_s"],
            "to_target": (pf["to_target_est_s"] / hj["to_target_est_s"]
                          if hj.get("to_target_est_s") and pf.get("to_target_est_s")
                          else None),
            "to_target_measured": (pf["to_target_s"] / hj["to_target_s"]
                                   if hj.get("to_target_s") and pf.get("to_target_s")
                                   else None),
            "reached_at_start": hj.get("to_target_steps") == 0,
            "reached": hj.get("to_target_steps") is not None,
            "loss_diff": hj["final_loss"] - pf["final_loss"],
        }
        try:
            c["loss_diff_se"] = paired_se(np.load(pls[impl]), np.load(pls["pfhedge"]),
                                          SET_UP["aversion"])
        except (OSError, ValueError, KeyError):
            c["loss_diff_se"] = None
        out[impl] = c
    return out


def _f(v: Any, fmt: str, none: str = "-") -> str:
    return none if v is None else format(v, fmt)


def _markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], SET_UP
    lines = [
        "# Benchmark W5: deep-hedging training, hedgejax vs pfhedge",
        "",
        "Cases: call = short 1 European call, costs 1e-3; call-nocost = the same without",
        "costs; lookback = short 1 fixed-strike lookback call (max of the 21 grid",
        f"prices), costs 1e-3. S0 = K = {s['spot']:g}, sigma {s['sigma']:g}, r {s['rate']:g},",
        f"{s['n_steps']} steps over {s['maturity'] * 250:g}/250 years; MLP "
        f"{s['hidden']} x {s['depth']};",
        f"entropic risk (a = {s['aversion']:g}); 2^{report['log2_paths']} fresh paths per "
        f"step, {report['steps']} steps;",
        f"held-out loss on the same 2^{report['log2_eval']} paths for both.",
        "",
        f"- date: {report['date']}",
        f"- machine: {m.get('cpu_model')}, {m['cpu_count']} CPUs; jax {m.get('jax')} "
        f"({m.get('jax_backend')}),",
        f"  torch {m.get('torch')}, pfhedge {m.get('pfhedge')}, hedgejax {m.get('hedgejax')}",
        f"- command: `{report['command']}`",
        "",
        "`ms/step`: median optimisation step after the first; `to target s`: training",
        "time to the first snapshot with held-out loss <= pfhedge's final one, as compile",
        "+ steps x ms/step (the measured sums, in the JSON, also hold other processes'",
        "time on a busy machine); `loss`: final held-out entropic risk (pfhedge's P&L",
        "convention); `peak MiB`: the worker's peak RSS after training.",
        "",
        "| case | impl | ms/step | compile s | to target s (steps) | loss | peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for case in report["cases"]:
        for impl in IMPLS:
            r = report["results"].get(case, {}).get(impl)
            if r is None:
                continue
            if r.get("error"):
                lines.append(f"| {case} | {impl} | ERROR | | | | |")
                continue
            to = (f"{r['to_target_est_s']:.1f} ({r['to_target_steps']})"
                  if r.get("to_target_est_s") is not None else "not reached")
            lines.append(f"| {case} | {impl} | {r['median_step_s'] * 1e3:.0f} | "
                         f"{_f(r.get('compile_s'), '.1f')} | {to} | {r['final_loss']:.5f} | "
                         f"{r['peak_rss_train_mib']:.0f} |")
    refs = []
    for case in report["cases"]:
        rows = report["results"].get(case, {})
        delta = rows.get("hedgejax", {}).get("untrained_loss")
        none = rows.get("hedgejax-direct", {}).get("untrained_loss")
        if delta is not None or none is not None:
            refs.append(f"- {case}: no hedge {_f(none, '.5f')}, Black-Scholes delta hedge "
                        f"{_f(delta, '.5f')}")
    if refs:
        lines += ["", "Untrained policies on the same held-out paths (hedgejax-direct holds "
                  "nothing,", "hedgejax delta hedges):", "", *refs]
    lines += ["", "pfhedge / hedgejax (hedgejax loss - pfhedge loss, paired SE):", ""]
    for case in report["cases"]:
        for impl, c in (report["comparisons"].get(case) or {}).items():
            to = ("reached at step 0" if c["reached_at_start"] else
                  _f(c["to_target"], ".1f", "n/a") + "x" if c["reached"] else "not reached")
            lines.append(f"- {case}, {impl}: per step {c['per_step']:.2f}x; time to target "
                         f"{to};")
            lines.append(f"  loss diff {c['loss_diff']:+.2e} "
                         f"(SE {_f(c.get('loss_diff_se'), '.1e')})")
    b, fl = report.get("bounds") or {}, report.get("flops") or {}
    if b and not b.get("error") and fl:
        lines += [
            "", "## Flops and the bound", "",
            f"MLP matrix products per step ({fl['rows']:,} path-steps): forward "
            f"{fl['forward_per_row']} + backward",
            f"{fl['backward_per_row']} flops per path-step = {fl['useful'] / 1e9:.2f} GFLOP "
            f"useful; hedgejax",
            f"executes {fl['executed_two_level_checkpoint'] / 1e9:.2f} GFLOP (two recomputed "
            "forward passes).",
            f"This CPU (jax): {b['matmul_n']}^2 matmul {b['matmul_gflops']:.0f} GFLOP/s; "
            f"({b['layer_rows']:,} x 32) @ (32 x 32)",
            f"{b['layer_gflops']:.0f} GFLOP/s, with tanh {b['layer_tanh_gflops']:.0f} GFLOP/s.",
            "",
            "| case | impl | useful GFLOP/s | of matmul | of layer+tanh |",
            "|---|---|---:|---:|---:|",
        ]
        for case in report["cases"]:
            for impl in IMPLS:
                r = report["results"].get(case, {}).get(impl)
                if not r or r.get("error") or "achieved_gflops" not in r:
                    continue
                lines.append(f"| {case} | {impl} | {r['achieved_gflops']:.1f} | "
                             f"{r['fraction_of_matmul']:.0%} | "
                             f"{r['fraction_of_layer']:.0%} |")
    prof = report.get("profile") or []
    if prof:
        base = next((p for p in prof if p.get("variant") == "step" and not p.get("error")),
                    None)
        lines += ["", "## Profile of the hedgejax step (case call)", "",
                  "| variant | ms | vs step |", "|---|---:|---:|"]
        for p in prof:
            if p.get("error"):
                lines.append(f"| {p['variant']} | ERROR | |")
                continue
            ratio = base["median_s"] / p["median_s"] if base else None
            lines.append(f"| {p['variant']} | {p['median_s'] * 1e3:.0f} | "
                         f"{_f(ratio, '.2f')}x |")
        bd = base.get("breakdown") if base else None
        if bd:
            lines += ["", f"XLA operations of one step ({bd['ops_ms_per_step']:.0f} ms in "
                      f"the trace; busiest thread {bd['busiest_thread_share']:.0%}):", "",
                      "| phase | kind | ms | share |", "|---|---|---:|---:|"]
            for row in bd["rows"]:
                if row["share"] >= 0.005:
                    lines.append(f"| {row['phase']} | {row['kind']} | "
                                 f"{row['ms_per_step']:.1f} | {row['share']:.0%} |")
    if report.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _choices(allowed: Sequence[str]):
    def parse(text: str) -> list[str]:
        vals = [p.strip() for p in text.split(",") if p.strip()]
        bad = [v for v in vals if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {','.join(allowed)}")
        return list(dict.fromkeys(vals))
    return parse


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="bench_w5.py",
                      description="Benchmark W5: deep-hedging training, hedgejax vs pfhedge.")
    p.add_argument("--cases", type=_choices(tuple(CASES)), default=None,
                   help=f"cases (default {','.join(CASES)}; call with --quick)")
    p.add_argument("--impls", type=_choices(IMPLS), default=None,
                   help=f"implementations (default {','.join(IMPLS)}; pfhedge,hedgejax with "
                        "--quick; pfhedge is skipped when not installed)")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="optimisation steps of each (default 200; 4 with --quick)")
    p.add_argument("--log2-paths", type=_positive_int, default=None,
                   help="log2 paths per step (default 15; 10 with --quick)")
    p.add_argument("--log2-eval", type=_positive_int, default=None,
                   help="log2 held-out paths (default 18; 12 with --quick)")
    p.add_argument("--eval-every", type=_positive_int, default=None,
                   help="steps between snapshots evaluated (default 5; 2 with --quick)")
    p.add_argument("--aversion", type=_positive_float, default=1.0,
                   help="entropic risk aversion a, per unit of S0 (pfhedge's default 1; 100 "
                        "is the same problem as a = 1 with S0 = 100)")
    p.add_argument("--hj-lr", type=_positive_float, default=1e-3,
                   help="hedgejax's peak learning rate (warm-up + cosine)")
    p.add_argument("--profile", type=_choices(PROFILE_VARIANTS), default=None,
                   help="profile variants of the hedgejax step (default all; step with "
                        "--quick)", metavar="V,V")
    p.add_argument("--no-profile", action="store_true", help="skip the profile")
    p.add_argument("--profile-only", action="store_true",
                   help="only the bounds and the profile (no training runs)")
    p.add_argument("--profile-repeats", type=_positive_int, default=None,
                   help="timed calls per profile variant (default 7; 2 with --quick)")
    p.add_argument("--no-trace", dest="trace", action="store_false",
                   help="skip the jax.profiler breakdown of the step")
    p.add_argument("--bound-rows", type=_positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--matmul", type=_positive_int, default=None,
                   help="n of the n x n matmul bound (default 4096; 512 with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, runs/")
    p.add_argument("--out", type=Path, default=None, help="JSON output (.md next to it)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--timeout", type=_positive_float, default=3600.0,
                   help="per-child timeout in seconds")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--heldout", help=argparse.SUPPRESS)
    p.add_argument("--pl-out", help=argparse.SUPPRESS)
    p.add_argument("--target", type=float, default=None, help=argparse.SUPPRESS)
    return p


def _defaults(args: argparse.Namespace) -> None:
    q = args.quick
    args.steps = args.steps or (QUICK["steps"] if q else 200)
    args.log2_paths = args.log2_paths or (QUICK["log2_paths"] if q else 15)
    args.log2_eval = args.log2_eval or (QUICK["log2_eval"] if q else 18)
    args.eval_every = args.eval_every or (QUICK["eval_every"] if q else 5)
    args.profile_repeats = args.profile_repeats or (2 if q else 7)
    args.cases = args.cases or (QUICK["cases"] if q else list(CASES))
    args.impls = args.impls or (["pfhedge", "hedgejax"] if q else list(IMPLS))
    if args.profile_only:
        args.cases = []
    args.bound_rows = args.bound_rows or (QUICK["bound_rows"] if q else
                                          (1 << args.log2_paths) * SET_UP["n_steps"])
    args.matmul = args.matmul or (QUICK["matmul"] if q else 4096)
    if args.no_profile:
        args.profile = []
    elif args.profile is None:
        args.profile = list(QUICK["profile"] if q else PROFILE_VARIANTS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _defaults(args)
    SET_UP["aversion"] = args.aversion
    if args.worker:
        kind = args.worker[0]
        if kind == "bounds":
            out = worker_bounds(args)
        elif kind == "profile":
            out = worker_profile(args.worker[1], args)
        elif kind in IMPLS:
            out = (worker_pfhedge(args.worker[1], args) if kind == "pfhedge" else
                   worker_hedgejax(kind, args.worker[1], args))
        else:
            parser.error(f"unknown worker {kind!r}")
        print(json.dumps(_finite(out)), flush=True)
        return 0

    out: Path = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    if out.suffix != ".json":
        parser.error(f"--out must end in .json, got {str(out)!r}")
    impls = list(args.impls)
    notes = []
    if "pfhedge" in impls and not pfhedge_available():
        print("skipping pfhedge: not installed (pip install torch --index-url "
              "https://download.pytorch.org/whl/cpu, then pip install -e '.[bench]')",
              file=sys.stderr)
        impls.remove("pfhedge")
        notes.append("pfhedge not installed in this environment: skipped (no ratios)")
    results: dict[str, dict[str, Any]] = {}
    comparisons: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_w5") as tmp:
        heldout = Path(tmp) / "heldout.npy"
        np.save(heldout, heldout_paths(1 << args.log2_eval, args.seed + 12345))
        for case in args.cases:
            results[case] = {}
            pls = {}
            target = None
            for impl in [i for i in IMPLS if i in impls]:
                pls[impl] = Path(tmp) / f"{case}-{impl}.npy"
                extra = ["--heldout", str(heldout), "--pl-out", str(pls[impl])]
                if impl != "pfhedge" and target is not None:
                    extra += ["--target", repr(target)]
                print(f"running {impl} on {case}: {args.steps} steps of 2^{args.log2_paths} "
                      "paths...", file=sys.stderr, flush=True)
                row = _child([impl, case], args, extra)
                results[case][impl] = row
                if not row.get("error"):
                    steps = row.get("to_target_steps")
                    row["to_target_est_s"] = (None if steps is None else 0.0 if steps == 0 else
                                              (row.get("compile_s") or 0.0)
                                              + steps * row["median_step_s"])
                if row.get("error"):
                    print(f"  failed: {row['error']}", file=sys.stderr, flush=True)
                    continue
                if impl == "pfhedge":
                    target = row["final_loss"]
                print(f"  {row['median_step_s'] * 1e3:.0f} ms/step, final held-out loss "
                      f"{row['final_loss']:.5f}, to target "
                      f"{_f(row.get('to_target_s'), '.1f')} s", file=sys.stderr, flush=True)
            comparisons[case] = _compare(results[case], pls)
    print("measuring the matmul and layer bounds...", file=sys.stderr, flush=True)
    bounds = _child(["bounds"], args)
    rows = (1 << args.log2_paths) * SET_UP["n_steps"]
    flops_by_case = {}
    for case in args.cases or ["call"]:
        n_in = 5 if CASES[case]["kind"] == "lookback" else 4
        fl = mlp_flops(n_in, SET_UP["hidden"], SET_UP["depth"], rows)
        flops_by_case[case] = fl
        for r in results.get(case, {}).values():
            if r.get("error") or bounds.get("error"):
                continue
            r["achieved_gflops"] = fl["useful"] / r["median_step_s"] / 1e9
            r["fraction_of_matmul"] = r["achieved_gflops"] / bounds["matmul_gflops"]
            r["fraction_of_layer"] = r["achieved_gflops"] / bounds["layer_tanh_gflops"]
    first = (args.cases or ["call"])[0]
    flops = {**flops_by_case[first], "rows": rows, "case": first}
    profile = []
    for variant in args.profile:
        print(f"profiling the hedgejax step: {variant}...", file=sys.stderr, flush=True)
        row = _child(["profile", variant], args)
        row.setdefault("variant", variant)
        profile.append(row)
    report = {
        "benchmark": "bench_w5",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "experiments/bench_w5.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "machine": _machine_info(),
        "set_up": SET_UP, "cases": args.cases, "case_parameters": CASES,
        "steps": args.steps, "log2_paths": args.log2_paths, "log2_eval": args.log2_eval,
        "eval_every": args.eval_every, "hj_lr": args.hj_lr,
        "results": results, "comparisons": comparisons, "bounds": bounds, "flops": flops,
        "flops_by_case": flops_by_case, "profile": profile, "notes": notes,
        "columns": {
            "median_step_s": "median wall time of the optimisation steps after the first",
            "compile_s": "first step minus median_step_s (hedgejax)",
            "to_target_s": "sum of step times (first included) up to the first snapshot "
                           "whose held-out loss <= pfhedge's final held-out loss",
            "to_target_est_s": "compile_s + to_target_steps x median_step_s (0 when the "
                               "untrained policy is already there); the ratios use it",
            "final_loss": "entropic risk (a = 1) of the final policy's P&L on the held-out "
                          "paths, pfhedge's P&L convention (no premium)",
            "peak_rss_train_mib": "worker's peak RSS after training (before evaluation)",
            "loss_diff_se": "paired standard error of hedgejax minus pfhedge final loss",
        },
    }
    text = json.dumps(_finite(report), indent=2, allow_nan=False, default=str) + "\n"
    atomic_write_text(out, text)
    atomic_write_text(out.with_suffix(".md"), _markdown(report))
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    failed = [r for c in results.values() for r in c.values() if r.get("error")]
    failed += [p for p in profile if p.get("error")]
    return 1 if failed or bounds.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
