"""The worker app for ``faust -A agents.app worker``, configured from MF_* variables."""

from agents.factory import create_app
from metricsflow.config import load_settings

app = create_app(load_settings())
