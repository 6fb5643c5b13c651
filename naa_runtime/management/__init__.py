"""The management plane of a software NAA: HTTP API (flash, scrub, health, identity, sensors)
and Prometheus metrics. `naa_runtime.cli serve` is its only caller."""

from naa_runtime.management.metrics import DataPlaneCounters, naa_registry
from naa_runtime.management.server import create_app

__all__ = ["DataPlaneCounters", "create_app", "naa_registry"]
