"""Shared fixtures. Precision tests request `x64`, which runs them in float64."""

import jax
import pytest


@pytest.fixture
def x64():
    """Enable float64 for one test, then restore the previous setting."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)
