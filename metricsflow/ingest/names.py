"""Name translation shared by the protocols whose names are not Prometheus names.

InfluxDB line protocol and OTLP allow any UTF-8 in names; PromQL selectors only
reach ``[a-zA-Z_:][a-zA-Z0-9_:]*`` metric names and ``[a-zA-Z_][a-zA-Z0-9_]*``
label names. The rules follow Prometheus' OTLP translator
(``UnderscoreEscapingWithSuffixes``), so a series reads the same whichever
protocol delivered it:

* metric names: every run of characters outside ``[a-zA-Z0-9_:]`` becomes one
  ``_`` (``http.server..duration`` -> ``http_server_duration``); a leading digit
  gets a ``_`` prefix; an empty result is ``_``.
* label names: every character outside ``[a-zA-Z0-9_]`` becomes ``_`` (no
  collapsing, so ``a.b`` and ``a..b`` stay distinct); a leading digit gets a
  ``key_`` prefix; an empty name stays empty (the collector rejects it).

Remote write and the native protocol carry Prometheus names already and are
not translated; the collector validates every name whatever its source.
"""

from __future__ import annotations

import functools
import re

_VALID_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_VALID_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_BAD_RUN = re.compile(r"[^a-zA-Z0-9_:]+")
_LABEL_BAD_CHAR = re.compile(r"[^a-zA-Z0-9_]")


# Names repeat across requests (a fleet sends the same few hundred names), so a
# bounded cache turns the regex work into one dict lookup.
@functools.lru_cache(maxsize=65536)
def sanitize_metric_name(name: str) -> str:
    """Return ``name`` as a valid Prometheus metric name (see module doc)."""
    if _VALID_METRIC.fullmatch(name):
        return name
    out = _METRIC_BAD_RUN.sub("_", name)
    if not out or out[0].isdigit():
        out = "_" + out
    return out


@functools.lru_cache(maxsize=65536)
def sanitize_label_name(name: str) -> str:
    """Return ``name`` as a valid Prometheus label name (see module doc)."""
    if not name or _VALID_LABEL.fullmatch(name):
        return name
    out = _LABEL_BAD_CHAR.sub("_", name)
    if out[0].isdigit():
        out = "key_" + out
    return out
