from .bands import BandHedge as BandHedge, WhalleyWilmott as WhalleyWilmott
from .base import AbstractStrategy as AbstractStrategy, Observation as Observation
from .delta import DeltaHedge as DeltaHedge, NoHedge as NoHedge, StaticHedge as StaticHedge
from .learned import AsymmetricBand as AsymmetricBand, LearnedBand as LearnedBand
from .neural import NeuralHedge as NeuralHedge
from .options import DeltaGammaHedge as DeltaGammaHedge, DeltaVegaHedge as DeltaVegaHedge
from .wrappers import ExecutionLag as ExecutionLag, Limits as Limits, MoveBased as MoveBased
