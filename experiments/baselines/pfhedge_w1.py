"""Workload W1 with pfhedge (PyTorch), the closest existing library, as a speed baseline.

pfhedge simulates Black-Scholes paths (`BrownianStock`), hedges a European call with its
`BlackScholes` delta module through `Hedger`, and computes P&L with `pfhedge.nn.functional.pl`
for a *short* option with S0 = K = 1 and no premium: pl = -payoff + sum(delta dS) - cost.
To compare with hedgejax (the holder of a long call with S0 = K = 100 bought at V0) we
convert per path: hedge_error = 100 (payoff - sum(delta dS)) - V0 = -100 pl_no_cost - V0,
cost = 100 (pl_no_cost - pl_with_cost), pnl = hedge_error - cost. The timing covers what
a pfhedge user runs: simulation, the hedge and the P&L (with and without cost).

Install the CPU build of torch first, `pip install torch --index-url
https://download.pytorch.org/whl/cpu` (a plain `pip install torch` pulls gigabytes of CUDA
libraries), then `pip install -e '.[bench]'` (pfhedge, tqdm). Requires r = q = 0
(pfhedge's BrownianStock has no rate).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _bs_call(spot: float, strike: float, maturity: float, vol: float) -> float:
    sd = vol * math.sqrt(maturity)
    d1 = math.log(spot / strike) / sd + 0.5 * sd

    def cdf(x):
        return 0.5 * math.erfc(-x / math.sqrt(2))

    return spot * cdf(d1) - strike * cdf(d1 - sd)


def run_w1_pfhedge(n_paths: int, n_steps: int = 252, *, spot: float = 100.0,
                   strike: float = 100.0, maturity: float = 1.0, vol: float = 0.2,
                   cost_rate: float = 0.001, seed: int = 0) -> dict[str, Any]:
    """W1 with pfhedge in float32; per-path results in hedgejax's conventions."""
    import torch
    from pfhedge.instruments import BrownianStock, EuropeanOption
    from pfhedge.nn import BlackScholes, Hedger
    from pfhedge.nn.functional import pl

    torch.manual_seed(seed)
    stock = BrownianStock(sigma=vol, cost=cost_rate, dt=maturity / n_steps)
    option = EuropeanOption(stock, strike=strike / spot, maturity=maturity)
    model = BlackScholes(option)
    hedger = Hedger(model, model.inputs())
    with torch.no_grad():
        option.simulate(n_paths=n_paths)
        hedge = hedger.compute_hedge(option)
        spots = torch.stack([stock.spot], dim=1)
        payoff = option.payoff()
        with_cost = pl(spots, hedge, cost=[cost_rate], payoff=payoff)
        no_cost = pl(spots, hedge, cost=[0.0], payoff=payoff)
    v0 = _bs_call(spot, strike, maturity, vol)
    hedge_error = -spot * no_cost.numpy().astype(np.float64) - v0
    cost = spot * (no_cost - with_cost).numpy().astype(np.float64)
    units = hedge.numpy()[:, 0, :]
    trades = np.diff(np.concatenate([np.zeros((n_paths, 1)), units], axis=1), axis=1)
    return {"pnl": hedge_error - cost, "hedge_error": hedge_error, "cost": cost,
            "n_trades": (np.abs(trades) > 1e-12).sum(axis=1)}
