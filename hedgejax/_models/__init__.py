from .base import AbstractModel as AbstractModel
from .base import ModelState as ModelState
from .black_scholes import BlackScholes as BlackScholes
