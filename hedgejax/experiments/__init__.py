"""hedgejax's experiments, installed with the package.

Each answers one question of dynamic hedging with a table and figures. Run
`hedgejax experiment list`, then `hedgejax experiment NAME [--config FILE.toml] [--paths N]
[--out DIR] [--seed S]`. Defaults live in hedgejax/experiments/configs/NAME.toml, the
framework (config checks, run folder, outputs) in hedgejax/experiments/_framework.py.

The benchmarks (`hedgejax bench`) belong to a source checkout: experiments/ at the top of
the repository, with their baselines and committed results.
"""

# Command-line names, in the order `hedgejax experiment list` shows them; the module of
# "market-maker" is hedgejax/experiments/market_maker.py.
NAMES = (
    "market-maker",
    "dynamic-vs-static",
    "frequency-vs-cost",
    "gamma-scalping",
    "pnl-explain",
    "vega-hedging",
    "jump-risk",
    "model-risk",
    "portfolio-insurance",
    "band-learning",
    "historical",
    "exotic-hedging",
    "deep-hedging",
    "feedback",
    "convertible-arbitrage",
    "merger-arbitrage",
    "tail-risk",
)
