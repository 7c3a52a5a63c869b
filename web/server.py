"""Runs the worker's aiohttp views inside the Faust worker, as a mode Service."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler
from mode import Service

from agents.alerting import RuleRunner
from tables.storage import WorkerStorage
from web.cluster import Cluster
from web.peer_channel import CHANNEL_PATH
from web.query_api import QUERY_SERVICE_KEY, QueryService, add_query_routes
from web.rules_api import add_rules_routes
from web.views import READY_KEY, STORAGE_KEY, add_routes

log = logging.getLogger(__name__)


def build_web_app(storage: WorkerStorage, ready: Callable[[], bool], cluster: Cluster,
                  rules: RuleRunner | None = None) -> web.Application:
    @web.middleware
    async def before_cuts(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == CHANNEL_PATH:  # open for minutes: its frames hold cuts back one by one
            return await handler(request)
        with storage.queries.running():  # cuts and seals wait while requests are answered
            return await handler(request)

    app = web.Application(client_max_size=8 * 1024 * 1024, middlewares=[before_cuts])
    app[STORAGE_KEY] = storage
    app[READY_KEY] = ready
    app[QUERY_SERVICE_KEY] = QueryService(cluster)
    add_routes(app)
    add_query_routes(app)
    if rules is not None:
        add_rules_routes(app, rules, cluster)
    return app


class WebServer(Service):
    """Starts with the worker (before table recovery ends, so /healthz answers during it)."""

    def __init__(self, storage: WorkerStorage, ready: Callable[[], bool], cluster: Cluster, host: str, port: int,
                 rules: RuleRunner | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._cluster = cluster
        self._app = build_web_app(storage, ready, cluster, rules)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None

    @property
    def web_app(self) -> web.Application:
        return self._app

    async def on_start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port, backlog=512).start()
        log.info("worker web on http://%s:%d", self._host, self._port)
        print(f"worker web ready http://{self._host}:{self._port}", flush=True)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        await self._cluster.close()
