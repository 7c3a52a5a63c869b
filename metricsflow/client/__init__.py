"""metricsflow client SDK: push metrics to a collector without ever blocking the caller.

``Client`` (threads) and ``AsyncClient`` (asyncio) buffer points in a bounded
buffer and send batches over gRPC (default) or HTTP protobuf, with exponential
backoff and full jitter on retryable errors. See docs/client.md.
"""

from metricsflow.client._api import Timing
from metricsflow.client._core import ClientConfig, ClientStats, DropPolicy, backoff_delay_s
from metricsflow.client.aio import AsyncClient
from metricsflow.client.sync import Client
from metricsflow.model import MetricKind

__all__ = ["AsyncClient", "Client", "ClientConfig", "ClientStats", "DropPolicy", "MetricKind", "Timing",
           "backoff_delay_s"]
