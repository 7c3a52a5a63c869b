"""``Client``: the thread-based client. One daemon sender thread per client."""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from types import TracebackType

from metricsflow.client._api import Recording
from metricsflow.client._core import (
    Batch,
    BatchEncoder,
    ClientConfig,
    ClientStats,
    Recorder,
    _Counts,
    make_config,
    snapshot,
)
from metricsflow.client._send import SendPolicy
from metricsflow.client.transport import (
    BatchRejected,
    GrpcTransport,
    HttpTransport,
    SyncTransport,
    TransientSendError,
)


def make_transport(config: ClientConfig) -> SyncTransport:
    if config.transport == "grpc":
        return GrpcTransport(config.target, config.tenant)
    return HttpTransport(config.target, config.tenant)


AT_EXIT_TIMEOUT_S = 2.0  # bounded flush when the interpreter exits without close()


def _close_at_exit(ref: weakref.ref[Client]) -> None:
    client = ref()
    if client is not None and not client._closed:
        client.close(AT_EXIT_TIMEOUT_S)


class Client(Recording):
    """Buffers points and sends them in the background (gRPC by default).

    >>> client = Client("127.0.0.1:50051", tenant="team-a")   # doctest: +SKIP
    >>> client.counter("http_requests", 1, route="/", code=200)  # doctest: +SKIP
    >>> client.close(timeout_s=5)                              # doctest: +SKIP

    Options are the fields of :class:`ClientConfig` (or pass ``config=``). A batch
    is sent when ``batch_points`` are buffered or ``flush_interval_s`` passed.
    """

    def __init__(self, target: str | None = None, *, config: ClientConfig | None = None,
                 transport_impl: SyncTransport | None = None, **options: object) -> None:
        self.config = make_config(target, config, options)
        self._recorder = Recorder(self.config)
        self._encoder = BatchEncoder(self.config)
        self._counts = _Counts()
        self._policy = SendPolicy(self.config, self._encoder, self._counts)
        self._transport = transport_impl if transport_impl is not None else make_transport(self.config)
        self._wake_event = threading.Event()
        self._closing = threading.Event()
        self._flush_cond = threading.Condition()
        self._flush_wanted = 0
        self._flush_done = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="metricsflow-client-sender", daemon=True)
        self._thread.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- public ------------------------------------------------------------------------------
    @property
    def stats(self) -> ClientStats:
        return snapshot(self._recorder, self._counts)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Send everything recorded so far; True if done within ``timeout_s`` (waits, unlike recording)."""
        with self._flush_cond:
            self._flush_wanted += 1
            wanted = self._flush_wanted
        self._wake_event.set()
        with self._flush_cond:
            return self._flush_cond.wait_for(lambda: self._flush_done >= wanted or self._closed, timeout_s) and \
                self._flush_done >= wanted

    def close(self, timeout_s: float = 5.0) -> bool:
        """Flush what can be sent within ``timeout_s``, then stop.

        Returns True when nothing was left behind; points still buffered at the
        deadline are counted as dropped (``close_timeout``). Idempotent.
        """
        if self._closed:
            return True
        self._policy.close_deadline = time.monotonic() + max(0.0, timeout_s)
        self._closing.set()
        self._wake_event.set()
        # A request in flight is bounded by the deadline too (its timeout is clipped).
        self._thread.join(max(0.0, timeout_s) + 1.0)
        left = self._recorder.discard_all("close_timeout")
        self._closed = True
        with self._flush_cond:
            self._flush_cond.notify_all()
        self._transport.close()
        return left == 0 and "close_timeout" not in self.stats.dropped_by_reason

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- sender thread -----------------------------------------------------------------------
    def _wake(self) -> None:
        self._wake_event.set()

    def _run(self) -> None:
        interval = self.config.flush_interval_s
        next_flush = time.monotonic() + interval
        while True:
            closing = self._closing.is_set()
            wanted = self._flush_wanted
            partial = closing or wanted > self._flush_done or time.monotonic() >= next_flush
            batch = self._recorder.take(partial)
            if batch is not None:
                self._send(batch)
                continue
            if partial:
                next_flush = time.monotonic() + interval
                with self._flush_cond:
                    self._flush_done = max(self._flush_done, wanted)
                    self._flush_cond.notify_all()
            if closing:
                return
            self._wake_event.wait(max(0.0, next_flush - time.monotonic()))
            self._wake_event.clear()

    def _send(self, batch: Batch) -> None:
        policy, n = self._policy, len(batch)
        body = policy.encode(batch)
        if body is None:
            return
        attempt = 0
        while True:
            timeout_s = policy.request_timeout_s(self._closing.is_set(), n)
            if timeout_s is None:
                return
            try:
                outcome = self._transport.send(body, n, timeout_s)
            except TransientSendError as exc:
                delay = policy.retry_delay_s(exc, attempt, self._closing.is_set(), n)
                if delay is None:
                    return
                attempt += 1
                if self._closing.is_set():
                    time.sleep(delay)
                else:
                    self._closing.wait(delay)  # close() cuts the wait short and re-checks the deadline
                continue
            except BatchRejected as exc:
                policy.rejected(exc, n)
                return
            except Exception as exc:  # SendFailed or anything else: never kill the sender thread
                policy.failed(exc, n)
                return
            policy.sent(outcome, n)
            return
