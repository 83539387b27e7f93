"""hedgejax: GPU-accelerated Monte Carlo hedging in JAX.

Conventions throughout: time in years, annualised volatility, continuously compounded rates,
prices in currency, hedge positions in shares of the underlying, P&L > 0 a gain to the holder
of the book, money in `HedgeResult` valued at the end of the hedging grid.
"""

from . import risk as risk
from ._costs import (
    AbstractCost as AbstractCost,
)
from ._costs import (
    CostSum as CostSum,
)
from ._costs import (
    Fixed as Fixed,
)
from ._costs import (
    NoCost as NoCost,
)
from ._costs import (
    Proportional as Proportional,
)
from ._costs import (
    Spread as Spread,
)
from ._grid import TimeGrid as TimeGrid
from ._hedge import HedgeResult as HedgeResult
from ._hedge import hedge as hedge
from ._instruments import (
    AbstractInstrument as AbstractInstrument,
)
from ._instruments import (
    Book as Book,
)
from ._instruments import (
    Digital as Digital,
)
from ._instruments import (
    EuropeanCall as EuropeanCall,
)
from ._instruments import (
    EuropeanPut as EuropeanPut,
)
from ._models import (
    AbstractModel as AbstractModel,
)
from ._models import (
    BlackScholes as BlackScholes,
)
from ._models import (
    ModelState as ModelState,
)
from ._montecarlo import MCGreek as MCGreek, mc_greeks as mc_greeks, mc_price as mc_price
from ._montecarlo import simulate as simulate
from ._pricing import Greeks as Greeks
from ._pricing import greeks as greeks
from ._pricing import price as price
from ._pricing import register_pricer as register_pricer
from ._strategies import (
    AbstractStrategy as AbstractStrategy,
)
from ._strategies import (
    BandHedge as BandHedge,
)
from ._strategies import (
    DeltaHedge as DeltaHedge,
)
from ._strategies import (
    NoHedge as NoHedge,
)
from ._strategies import (
    Observation as Observation,
)
from ._strategies import (
    StaticHedge as StaticHedge,
)
from ._strategies import (
    WhalleyWilmott as WhalleyWilmott,
)
from .risk import summary as summary

__version__ = "0.1.0"
