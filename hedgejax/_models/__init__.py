from .base import AbstractModel as AbstractModel, ModelState as ModelState
from .black_scholes import BlackScholes as BlackScholes
from .heston import FellerWarning as FellerWarning, Heston as Heston
from .historical import (
    Bootstrap as Bootstrap,
    HistoricalPaths as HistoricalPaths,
    load_prices_csv as load_prices_csv,
)
from .merton import Merton as Merton
