"""Ingest protocol parsers: one module per wire format, each a pure function.

Every ``parse_*`` takes the request body (bytes) and returns a
:class:`metricsflow.model.ParseResult` (StatsD: a columnar
:class:`metricsflow.ingest.statsd.StatsdBatch`). A body that cannot be read at
all raises :class:`metricsflow.errors.InvalidInput`; problems confined to a
point, line or series become ``Rejection``s and the rest is still returned.
Parsers only decode: name/label validation and limits are the collector's.
See docs/ingest.md.
"""
