from .base import AbstractModel as AbstractModel, ModelState as ModelState
from .black_scholes import BlackScholes as BlackScholes
from .feedback import Feedback as Feedback
from .heston import FellerWarning as FellerWarning, Heston as Heston
from .historical import (
    Bootstrap as Bootstrap,
    HistoricalPaths as HistoricalPaths,
    load_prices_csv as load_prices_csv,
)
from .merger import (
    MergerPaths as MergerPaths,
    MergerTarget as MergerTarget,
    merger_paths as merger_paths,
)
from .merton import Merton as Merton
