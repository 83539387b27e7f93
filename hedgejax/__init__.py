"""hedgejax: GPU-accelerated Monte Carlo hedging in JAX.

Conventions throughout: time in years, annualised volatility, continuously compounded rates,
prices in currency, hedge positions in shares of the underlying, P&L > 0 a gain to the holder
of the book, money in `HedgeResult` valued at the end of the hedging grid.

On a CPU, importing hedgejax before jax runs anything gives jax one CPU device per core (at
most 8): `hedge()` splits large runs over them. `HEDGEJAX_CPU_DEVICES=N` asks for N (1: one
device); jax's own settings (`XLA_FLAGS=--xla_force_host_platform_device_count=N`,
`jax_num_cpu_devices`) are left as they are (hedgejax/_devices.py).
"""

from . import data as data, features as features, risk as risk
from ._attribution import Attribution as Attribution
from ._calibrate import (
    Calibration as Calibration,
    Quotes as Quotes,
    calibrate as calibrate,
    check_no_arbitrage as check_no_arbitrage,
)
from ._convertible import Convertible as Convertible
from ._costs import (
    AbstractCost as AbstractCost,
    CostSum as CostSum,
    Fixed as Fixed,
    Impact as Impact,
    NoCost as NoCost,
    Proportional as Proportional,
    RandomSlippage as RandomSlippage,
    SmoothFixed as SmoothFixed,
    Spread as Spread,
)
from ._devices import configure_cpu_devices as _configure_cpu_devices
from ._exotics import (
    AbstractPathDependent as AbstractPathDependent,
    Asian as Asian,
    Barrier as Barrier,
    ForwardStart as ForwardStart,
    Lookback as Lookback,
    OneTouch as OneTouch,
    VarianceSwap as VarianceSwap,
)
from ._explain import (
    explain_summary as explain_summary,
    explain_table as explain_table,
    plot_explain as plot_explain,
)
from ._fit import History as History, evaluate as evaluate, fit as fit, grid_search as grid_search
from ._frontier import band_dominates as band_dominates, frontier as frontier
from ._grid import TimeGrid as TimeGrid
from ._hedge import (
    HedgeResult as HedgeResult,
    Trace as Trace,
    hedge as hedge,
    iter_hedge_chunks as iter_hedge_chunks,
)
from ._implied import implied_vol as implied_vol
from ._indifference import (
    IndifferencePrice as IndifferencePrice,
    indifference_price as indifference_price,
)
from ._instruments import (
    AbstractInstrument as AbstractInstrument,
    Book as Book,
    Digital as Digital,
    EuropeanCall as EuropeanCall,
    EuropeanPut as EuropeanPut,
)
from ._insurance import InsuranceResult as InsuranceResult, protective_put as protective_put
from ._models import (
    AbstractModel as AbstractModel,
    BlackScholes as BlackScholes,
    Bootstrap as Bootstrap,
    Feedback as Feedback,
    FellerWarning as FellerWarning,
    Heston as Heston,
    HistoricalPaths as HistoricalPaths,
    MergerPaths as MergerPaths,
    MergerTarget as MergerTarget,
    Merton as Merton,
    ModelState as ModelState,
    load_prices_csv as load_prices_csv,
    merger_paths as merger_paths,
)
from ._montecarlo import (
    MCGreek as MCGreek,
    mc_greeks as mc_greeks,
    mc_price as mc_price,
    simulate as simulate,
)
from ._pricing import (
    Greeks as Greeks,
    greeks as greeks,
    price as price,
    register_pricer as register_pricer,
)
from ._rebalance import Rebalance as Rebalance, rebalance as rebalance
from ._strategies import (
    AbstractStrategy as AbstractStrategy,
    AsymmetricBand as AsymmetricBand,
    BandHedge as BandHedge,
    DeltaGammaHedge as DeltaGammaHedge,
    DeltaHedge as DeltaHedge,
    DeltaVegaHedge as DeltaVegaHedge,
    ExecutionLag as ExecutionLag,
    LearnedBand as LearnedBand,
    Limits as Limits,
    MoveBased as MoveBased,
    NeuralHedge as NeuralHedge,
    NoHedge as NoHedge,
    Observation as Observation,
    StaticHedge as StaticHedge,
    WhalleyWilmott as WhalleyWilmott,
)
from ._strategy_file import load_strategy as load_strategy, save_strategy as save_strategy
from ._stream import stream_summary as stream_summary
from ._surface import PriceSurface as PriceSurface
from ._validate import (
    NonFiniteError as NonFiniteError,
    UndefinedStatisticWarning as UndefinedStatisticWarning,
)
from .risk import summary as summary

__version__ = "0.1.0"

# No import above starts jax's backend, so the CPU device count can still be set here
# (tests/test_devices_default.py checks it in a fresh process).
_configure_cpu_devices()
