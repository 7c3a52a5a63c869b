"""metricsflow: metrics collection and aggregation as a Kafka stream processor."""

__version__ = "0.1.0"
