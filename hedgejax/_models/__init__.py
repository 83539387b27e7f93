from .base import AbstractModel as AbstractModel, ModelState as ModelState
from .black_scholes import BlackScholes as BlackScholes
