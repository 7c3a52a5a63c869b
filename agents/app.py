"""The worker app for ``faust -A agents.app worker``, configured from MF_* variables."""

from agents.factory import create_app
from metricsflow.config import load_settings
from metricsflow.heap import keep_freed_memory

keep_freed_memory()  # as ``metricsflow worker`` does (metricsflow/heap.py)
app = create_app(load_settings())
