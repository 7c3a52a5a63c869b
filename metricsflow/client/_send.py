"""What the blocking and the asyncio client decide alike when they send one batch.

The clients differ only in how they wait and do I/O (a thread and ``time.sleep``
versus a task and ``asyncio``); encoding, counting, the retry policy and the close
deadline live here once, so both behave the same by construction.
"""

from __future__ import annotations

import time

from metricsflow.client._core import Batch, BatchEncoder, ClientConfig, _Counts, backoff_delay_s
from metricsflow.client.transport import SendOutcome, TransientSendError


class SendPolicy:
    """Counts and decisions for one client; the caller owns the transport and the waiting."""

    def __init__(self, config: ClientConfig, encoder: BatchEncoder, counts: _Counts) -> None:
        self.config = config
        self._encoder = encoder
        self._counts = counts
        self.close_deadline = float("inf")  # set by close(); bounds every request and backoff after it

    def drop(self, reason: str, n: int) -> None:
        self._counts.drops[reason] = self._counts.drops.get(reason, 0) + n

    def encode(self, batch: Batch) -> bytes | None:
        """The request body, or None (counted as dropped) when a tag value cannot be encoded."""
        try:
            return self._encoder.encode(batch)
        except Exception as exc:  # a bad tag value must not kill the sender
            self._error(f"encode: {exc!r}")
            self.drop("send_failed", len(batch))
            return None

    def request_timeout_s(self, closing: bool, n: int) -> float | None:
        """Timeout for the next attempt; None when closing left no time (the batch is dropped)."""
        timeout_s = self.config.request_timeout_s
        if closing:
            timeout_s = min(timeout_s, self.close_deadline - time.monotonic())
            if timeout_s <= 0:
                self.drop("close_timeout", n)
                return None
        self._counts.requests += 1
        return timeout_s

    def retry_delay_s(self, exc: TransientSendError, attempt: int, closing: bool, n: int) -> float | None:
        """Backoff before the next attempt; None when it would pass the close deadline (dropped)."""
        self._error(str(exc))
        cfg = self.config
        delay = backoff_delay_s(attempt, cfg.backoff_base_s, cfg.backoff_max_s, exc.server_retry_after_s)
        if closing and time.monotonic() + delay >= self.close_deadline:
            self.drop("close_timeout", n)
            return None
        self._counts.retries += 1
        return delay

    def rejected(self, exc: Exception, n: int) -> None:
        """The server refused the whole batch for good: sent, and rejected."""
        self._error(str(exc))
        self._counts.sent += n
        self._counts.rejected += n

    def failed(self, exc: Exception, n: int) -> None:
        self._error(str(exc))
        self.drop("send_failed", n)

    def sent(self, outcome: SendOutcome, n: int) -> None:
        self._counts.sent += n
        self._counts.accepted += outcome.accepted
        self._counts.rejected += outcome.rejected

    def _error(self, message: str) -> None:
        self._counts.errors += 1
        self._counts.last_error = message
