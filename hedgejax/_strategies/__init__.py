from .bands import BandHedge as BandHedge, WhalleyWilmott as WhalleyWilmott
from .base import AbstractStrategy as AbstractStrategy, Observation as Observation
from .delta import DeltaHedge as DeltaHedge, NoHedge as NoHedge, StaticHedge as StaticHedge
from .learned import AsymmetricBand as AsymmetricBand, LearnedBand as LearnedBand
from .neural import NeuralHedge as NeuralHedge
