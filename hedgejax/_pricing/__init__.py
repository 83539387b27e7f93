from . import black_scholes as black_scholes  # registers the closed forms
from .normal import norm_cdf as norm_cdf
from .registry import (
    Greeks as Greeks,
)
from .registry import (
    book_value_log as book_value_log,
)
from .registry import (
    greeks as greeks,
)
from .registry import (
    has_pricer as has_pricer,
)
from .registry import (
    price as price,
)
from .registry import (
    register_pricer as register_pricer,
)
