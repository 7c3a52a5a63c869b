"""GET /api/v1/rules and /api/v1/alerts in Prometheus' shapes, for the whole cluster.

Each group's state lives with the worker that owns the group's partition; the
answering worker asks its peers for theirs (``/internal/v1/alert_states``).
"""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import orjson
from aiohttp import web

from agents.alerting import RuleRunner
from metricsflow.alerting import AlertState, alerts_api_data, rules_api_data
from web.cluster import Cluster
from web.views import ok

RULES_KEY = web.AppKey("rules", RuleRunner)
CLUSTER_KEY = web.AppKey("cluster", Cluster)


async def _peer_states(cluster: Cluster) -> dict[str, AlertState]:
    out: dict[str, AlertState] = {}

    async def one(session: aiohttp.ClientSession, url: str) -> None:
        try:
            async with session.get(f"{url}/internal/v1/alert_states") as resp:
                if resp.status == 200:
                    for key, raw in orjson.loads(await resp.read()).items():
                        out[key] = AlertState.from_bytes(base64.b64decode(raw))
        except (aiohttp.ClientError, TimeoutError):
            pass  # that worker's groups show as not yet evaluated

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        await asyncio.gather(*(one(session, u) for u in cluster.peer_urls()))
    return out


async def _all_states(request: web.Request) -> dict[str, AlertState]:
    states = await _peer_states(request.app[CLUSTER_KEY])
    states.update(request.app[RULES_KEY].local_states())
    return states


async def rules(request: web.Request) -> web.StreamResponse:
    runner = request.app[RULES_KEY]
    rule_type = request.query.get("type")
    data = rules_api_data(runner.groups, await _all_states(request),
                          rule_type=rule_type if rule_type in ("alert", "record") else None,
                          rule_names=request.query.getall("rule_name[]", []),
                          group_names=request.query.getall("rule_group[]", []),
                          files=request.query.getall("file[]", []))
    return ok(data)


async def alerts(request: web.Request) -> web.StreamResponse:
    runner = request.app[RULES_KEY]
    data = alerts_api_data(runner.groups, await _all_states(request))
    return ok(data)


async def alert_states(request: web.Request) -> web.StreamResponse:
    states = request.app[RULES_KEY].local_states()
    body = {k: base64.b64encode(v.to_bytes()).decode() for k, v in states.items()}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def add_rules_routes(app: web.Application, runner: RuleRunner, cluster: Cluster) -> None:
    app[RULES_KEY] = runner
    app[CLUSTER_KEY] = cluster
    app.router.add_get("/api/v1/rules", rules)
    app.router.add_get("/api/v1/alerts", alerts)
    app.router.add_get("/internal/v1/alert_states", alert_states)
