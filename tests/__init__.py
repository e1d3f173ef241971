"""
Tests for nport_twisted, run with trial.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "nport",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("nport")
