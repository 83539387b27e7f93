"""hedgejax's experiments and benchmarks (a source checkout; not installed with the package).

Experiments: each answers one question of dynamic hedging with a table and a figure. Run
`hedgejax experiment list`, then `hedgejax experiment NAME [--config FILE.toml] [--paths N]
[--out DIR] [--seed S]`; defaults live in experiments/configs/NAME.toml, and the framework
(config checks, run folder, outputs) in experiments/_framework.py.

Benchmarks: workloads W1-W4 of DESIGN (`bench.py`, `hedgejax bench`), each with its
baselines in the same run, written under experiments/results/.
"""

# Command-line names, in the order `hedgejax experiment list` shows them; the module of
# "market-maker" is experiments/market_maker.py.
NAMES = (
    "market-maker",
    "dynamic-vs-static",
    "frequency-vs-cost",
    "gamma-scalping",
    "vega-hedging",
    "jump-risk",
    "model-risk",
    "portfolio-insurance",
    "band-learning",
    "historical",
)
