from . import (  # importing registers the pricers
    asian as asian,
    barrier as barrier,
    black_scholes as black_scholes,
    heston as heston,
    lookback as lookback,
    merton as merton,
    variance_swap as variance_swap,
)
from .normal import norm_cdf as norm_cdf
from .registry import (
    Greeks as Greeks,
    book_value_log as book_value_log,
    greeks as greeks,
    has_pricer as has_pricer,
    price as price,
    register_pricer as register_pricer,
)
