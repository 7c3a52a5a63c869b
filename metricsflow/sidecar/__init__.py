"""StatsD / DogStatsD sidecar: UDP in, flush-interval aggregation, gRPC to a collector.

Run it with ``python -m metricsflow.sidecar`` (see ``__main__``); semantics and
naming are in docs/sidecar.md.
"""

from metricsflow.sidecar.aggregate import QUANTILES, Aggregator, AggregatorLimits, OutPoint
from metricsflow.sidecar.server import Sidecar, SidecarConfig

__all__ = ["QUANTILES", "Aggregator", "AggregatorLimits", "OutPoint", "Sidecar", "SidecarConfig"]
