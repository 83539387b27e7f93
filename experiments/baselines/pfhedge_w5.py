"""Workload W5 with pfhedge (PyTorch): deep-hedging training, pfhedge's flagship set-up.

pfhedge's README and `examples/example_multi_layer_perceptron.py`: a short European call
(`EuropeanOption(BrownianStock(cost=c))`: S0 = K = 1, sigma = 0.2, mu = 0, dt = 1/250,
maturity 20/250, so 20 steps), hedged by `Hedger(MultiLayerPerceptron(), ["log_moneyness",
"expiry_time", "volatility", "prev_hedge"])` (an MLP of 4 hidden layers of 32 units, ReLU,
pfhedge's defaults) trained on `EntropicRiskMeasure()` (aversion a = 1) of the terminal P&L

    pl = -payoff + sum_t h_t (S_{t+1} - S_t) - c sum_t |h_t - h_{t-1}| S_t     (h_{-1} = 0)

(`pfhedge.nn.functional.pl`: no premium, the first trade's cost deducted, no unwind) with
Adam (lr 1e-3, torch's default) on fresh paths every step. The lookback variant hedges
`LookbackOption` (fixed strike: payoff max(max_t S_t - K, 0), the maximum over the 21
simulated prices) and adds the feature "max_log_moneyness" (log(max S / K)).

One optimisation step is what `Hedger.fit` runs per epoch before its validation pass:
`optimizer.zero_grad(); hedger.compute_loss(derivative, n_paths=n).backward();
optimizer.step()` (simulation included). `Hedger.fit` then also computes a validation loss
on another fresh simulation every epoch (`validation=True`); that pass is not part of the
timed step here, so the per-step comparison is conservative for hedgejax.

Held-out evaluation: the P&L of the hedger on given price paths (the same array that
hedgejax is evaluated on), by replacing the simulated spot buffer of the underlier.

Install the CPU build of torch first, `pip install torch --index-url
https://download.pytorch.org/whl/cpu`, then `pip install -e '.[bench]'` (pfhedge, tqdm).
"""

from __future__ import annotations

import copy

import numpy as np

FEATURES = {
    "call": ["log_moneyness", "expiry_time", "volatility", "prev_hedge"],
    "lookback": ["log_moneyness", "max_log_moneyness", "expiry_time", "volatility",
                 "prev_hedge"],
}


def make(kind: str, cost: float, *, sigma: float = 0.2, maturity: float = 20 / 250,
         dt: float = 1 / 250, strike: float = 1.0, seed: int = 0, lr: float = 1e-3,
         aversion: float = 1.0) -> dict:
    """The hedger, its derivative and its optimiser for one W5 case (kind "call" or
    "lookback"; entropic risk aversion `aversion`, pfhedge's default 1), with torch's
    global seed set to `seed` (weights and paths)."""
    import torch
    from pfhedge.instruments import BrownianStock, EuropeanOption, LookbackOption
    from pfhedge.nn import EntropicRiskMeasure, Hedger, MultiLayerPerceptron

    torch.manual_seed(seed)
    stock = BrownianStock(sigma=sigma, cost=cost, dt=dt)
    if kind == "call":
        derivative = EuropeanOption(stock, strike=strike, maturity=maturity)
    elif kind == "lookback":
        derivative = LookbackOption(stock, strike=strike, maturity=maturity)
    else:
        raise ValueError(f"kind must be 'call' or 'lookback', got {kind!r}")
    model = MultiLayerPerceptron(n_layers=4, n_units=32)
    hedger = Hedger(model, FEATURES[kind], criterion=EntropicRiskMeasure(a=aversion))
    hedger.compute_loss(derivative, n_paths=1)      # materialise the lazy first layer
    optimizer = torch.optim.Adam(hedger.model.parameters(), lr=lr)
    return {"hedger": hedger, "derivative": derivative, "optimizer": optimizer}


def train_step(setup: dict, n_paths: int) -> float:
    """One optimisation step on `n_paths` fresh paths; returns the training loss."""
    hedger, derivative, optimizer = setup["hedger"], setup["derivative"], setup["optimizer"]
    hedger.train()
    optimizer.zero_grad()
    loss = hedger.compute_loss(derivative, n_paths=n_paths)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def snapshot(setup: dict) -> dict:
    """A copy of the network's parameters (to evaluate later)."""
    return copy.deepcopy(setup["hedger"].model.state_dict())


def heldout_pl(setup: dict, spots: np.ndarray, params: dict | None = None,
               chunk: int = 1 << 16) -> np.ndarray:
    """Per-path P&L (pfhedge's `pl`, float64 numpy) of the hedger (with `params` loaded,
    if given) on the price paths `spots` (n_paths, n_steps + 1), chunk by chunk."""
    import torch

    hedger, derivative = setup["hedger"], setup["derivative"]
    if params is not None:
        saved = snapshot(setup)
        hedger.model.load_state_dict(params)
    hedger.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, spots.shape[0], chunk):
                part = torch.from_numpy(np.ascontiguousarray(spots[start:start + chunk],
                                                             dtype=np.float32))
                derivative.simulate(n_paths=part.shape[0])     # sets every buffer's shape
                derivative.ul().register_buffer("spot", part)
                out.append(hedger.compute_pl(derivative).numpy().astype(np.float64))
    finally:
        if params is not None:
            hedger.model.load_state_dict(saved)
    return np.concatenate(out)


def n_params(setup: dict) -> int:
    return sum(p.numel() for p in setup["hedger"].model.parameters())


