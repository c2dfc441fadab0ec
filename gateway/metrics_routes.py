"""``GET /metrics`` for Prometheus, and the middleware that counts every request (docs/metrics.md).

Open like ``/healthz`` unless ``SHOPBOT_METRICS_TOKEN`` is set; then only ``Authorization: Bearer
<token>`` gets an answer (wrong tokens count against the client's address as the admin API's do).
The queue figures are read from Redis at each scrape, so there is nothing to keep up to date between
scrapes; every gateway reports the same figures (take their max, not their sum).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from kombu.transport.redis import PRIORITY_STEPS, Channel
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from shopbot import metrics
from shopbot.store import HANDOFF_QUEUE, PENDING

from . import limits
from .context import aredis_key, celery_key, json_error, settings_key

log = logging.getLogger(__name__)
PATH = "/metrics"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNACKED = Channel.unacked_key  # kombu's hash of the messages workers took and have not acknowledged


def route_of(request: web.Request) -> str:
    """The route's template (``/handoff/api/conversations/{cid}``); ``unmatched`` for a 404 or 405."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def count_requests(request: web.Request, handler) -> web.StreamResponse:
    """Outermost: it sees the status the client gets, after errors_as_json has made its JSON."""
    t0 = time.perf_counter()
    status, socket = "500", False
    try:
        response = await handler(request)
        status, socket = str(response.status), isinstance(response, web.WebSocketResponse)
        return response
    except web.HTTPException as exc:
        status = str(exc.status)
        raise
    except asyncio.CancelledError:
        status = "499"  # the client went away, or the gateway is stopping
        raise
    finally:
        route, method = route_of(request), request.method if request.method in METHODS else "OTHER"
        metrics.HTTP_REQUESTS.labels(route, method, status).inc()
        if not socket:  # a socket's time is how long the shopper stayed
            metrics.HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - t0)


def broker_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps a queue's messages in: one per priority step (``nlu``, ``nlu\\x06\\x163``...)."""
    return [f"{queue}{Channel.sep}{p}" if p else queue for p in PRIORITY_STEPS]


async def queue_depths(request: web.Request) -> metrics.QueueDepths:
    queues = [q.name for q in request.app[celery_key].conf.task_queues]
    try:
        async with request.app[aredis_key].pipeline(transaction=False) as p:
            for q in queues:
                for k in broker_keys(q):
                    p.llen(k)
            p.hlen(UNACKED)
            p.zcard(PENDING)
            p.zcard(HANDOFF_QUEUE)
            got = await asyncio.wait_for(p.execute(), 2)
    except (RedisError, ConnectionError, TimeoutError, OSError) as exc:
        log.warning("metrics: Redis did not answer: %s", type(exc).__name__)
        return metrics.QueueDepths(None)
    n = len(PRIORITY_STEPS)
    lengths = {q: sum(got[i * n : (i + 1) * n]) for i, q in enumerate(queues)}
    unacked, pending, handoff = got[len(queues) * n :]
    return metrics.QueueDepths(lengths, unacked, pending, handoff)


async def serve_metrics(request: web.Request) -> web.Response:
    s = request.app[settings_key]
    if s.metrics_token is not None:
        if not metrics.token_matches(request.headers.get("Authorization"), s.metrics_token.get_secret_value()):
            try:
                await limits.hit(
                    request.app, f"auth:{limits.client_ip(request)}", s.rate_auth_failures_per_min, "wrong tokens"
                )
            except limits.Limited as exc:
                return limits.answer_429(exc)
            return json_error(401, "send Authorization: Bearer <SHOPBOT_METRICS_TOKEN>")
    depths = await queue_depths(request)
    body = await asyncio.to_thread(metrics.exposition, depths)  # multiprocess mode reads files
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    app.router.add_get(PATH, serve_metrics)
