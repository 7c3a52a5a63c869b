"""One root for every error metricsflow raises on purpose.

Bad input errors carry a short machine-readable ``reason`` that is also the label
value of the rejection counters, so what a client is told and what an operator
counts are the same word.
"""

from __future__ import annotations


class MetricsflowError(Exception):
    """Root of all metricsflow errors."""


class InvalidInput(MetricsflowError, ValueError):
    """The caller sent something we will not store; not retryable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RetryableError(MetricsflowError):
    """A dependency is unavailable; the same request may succeed later."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BackendUnavailable(RetryableError):
    """Kafka (or another required dependency) did not answer within the bound."""
