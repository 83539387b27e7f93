from .bands import BandHedge as BandHedge
from .bands import WhalleyWilmott as WhalleyWilmott
from .base import AbstractStrategy as AbstractStrategy
from .base import Observation as Observation
from .delta import DeltaHedge as DeltaHedge
from .delta import NoHedge as NoHedge
from .delta import StaticHedge as StaticHedge
