"""Errors the PromQL engine raises; each maps to one Prometheus HTTP API error.

``error_type`` is the ``errorType`` field of the Prometheus API response and
``http_status`` the status code Prometheus answers with, so the web layer can
translate any of these without a lookup table.
"""

from __future__ import annotations

from metricsflow.errors import MetricsflowError


class PromQLError(MetricsflowError):
    """Root of the engine's errors."""

    error_type = "execution"
    http_status = 422


class PromQLParseError(PromQLError, ValueError):
    """The query (or its time parameters) cannot be evaluated as written."""

    error_type = "bad_data"
    http_status = 400


class PromQLUnsupported(PromQLError):
    """Valid PromQL that this engine does not implement; the message names the construct."""

    error_type = "execution"
    http_status = 422


class PromQLExecutionError(PromQLError):
    """Evaluation failed, e.g. duplicate label sets or many-to-many matching."""

    error_type = "execution"
    http_status = 422


class PromQLTimeout(PromQLError):
    """Evaluation took longer than the engine's ``timeout_s``; retrying may help."""

    error_type = "timeout"
    http_status = 503
