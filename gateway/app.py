"""The gateway: an aiohttp app that takes shoppers' messages, queues them and answers at once.

``create_app(settings)`` builds it; ``python -m gateway`` serves it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from admin.access import AuditLog, TokenStore
from admin.credentials import CredentialStore, LiveChannels
from dialogue import load_policy
from handoff.queue import HandoffQueue
from shopbot.db import engine_for
from shopbot.settings import Settings
from shopbot.store import ConversationStore
from workers.app import make_app

from . import (
    admin_routes,
    fanout,
    faq_routes,
    handoff_routes,
    limits,
    metrics_routes,
    openapi,
    slack_routes,
    telegram_routes,
    web_routes,
)
from .context import (
    aredis_key,
    audit_key,
    celery_key,
    channels_key,
    credentials_key,
    engine_key,
    fanout_key,
    http_key,
    json_error,
    queue_key,
    settings_key,
    store_key,
    tokens_key,
)

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
MAX_BODY = 64 * 1024


@web.middleware
async def errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    """Every error is JSON with a reason; nothing unexpected escapes as a bare 500 page."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return json_error(
            exc.status, exc.reason if exc.text is None or exc.text.startswith(str(exc.status)) else exc.text
        )
    except (RedisError, ConnectionError, TimeoutError, OSError) as exc:
        log.error("backend unavailable: %s", type(exc).__name__, extra={"path": request.path})
        return json_error(503, "a backend service is unavailable; try again shortly")


async def _resources(app: web.Application) -> AsyncIterator[None]:
    s = app[settings_key]
    # Redis connections do not grow with load or sockets: SHOPBOT_GATEWAY_REDIS_CONNECTIONS in all (3 by
    # default). One reads every open socket's log in a blocking XREAD (gateway.fanout: its timeout
    # outlasts the block); the rest make two small pools whose users wait for a free connection: the
    # event loop's, and the threads', which also carry the Celery tasks the gateway sends.
    threads, loop = split_connections(s.gateway_redis_connections)
    app[store_key] = ConversationStore.bounded(s, threads)
    app[aredis_key] = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(
            s.redis_url, max_connections=loop, timeout=10, decode_responses=True, socket_timeout=10
        )
    )
    reader = aioredis.Redis.from_url(s.redis_url, decode_responses=True, socket_timeout=fanout.BLOCK_MS / 1000 + 10)
    app[fanout_key] = fanout.LogFanout(app[aredis_key], reader)
    # Sending only (the tasks are named, not imported), over the threads' pool: no connection of its own.
    app[celery_key] = make_app(s, send_over=app[store_key].r.connection_pool)
    app[queue_key] = HandoffQueue(app[store_key], load_policy(s.policies_file))
    app[engine_key] = await asyncio.to_thread(engine_for, s.database_url)  # migrates the schema if needed
    app[credentials_key] = CredentialStore.from_settings(s, app[engine_key], app[store_key].r)
    app[channels_key] = LiveChannels(app[credentials_key])
    legacy = s.agent_token.get_secret_value() if s.agent_token else None
    app[tokens_key] = TokenStore(app[engine_key], legacy)
    app[audit_key] = AuditLog(app[engine_key])
    app[http_key] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    yield
    await app[http_key].close()
    await app[fanout_key].close()
    await app[fanout_key].reader.aclose()
    app[engine_key].dispose()
    await app[aredis_key].aclose()
    app[celery_key].close()  # before the pool it sends over
    app[store_key].r.connection_pool.disconnect()


def split_connections(total: int) -> tuple[int, int]:
    """A gateway's Redis connections in all -> (threads' pool, event loop's pool); one more reads the logs."""
    threads = max(1, (total - 1) // 2)
    return threads, max(1, total - 1 - threads)


async def _going_away(app: web.Application) -> None:
    """The gateway is stopping (it accepts no more connections): every socket is closed now with 1001
    "going away", so the widgets reconnect to another gateway at once instead of waiting on this one."""
    if fanout_key in app:
        await app[fanout_key].close()


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


WORKER_QUEUES = ("nlu", "dialogue", "outbound")  # a message needs all three to be answered


async def readyz(request: web.Request) -> web.Response:
    store = request.app[store_key]
    try:
        await asyncio.wait_for(request.app[aredis_key].ping(), 2)
        workers = await asyncio.to_thread(store.live_workers)
    except (RedisError, ConnectionError, TimeoutError, OSError):
        return web.json_response({"ready": False, "redis": False, "workers": 0}, status=503)
    served = {q for queues in workers.values() for q in queues}
    missing = [q for q in WORKER_QUEUES if q not in served]
    ready = not missing
    body = {"ready": ready, "redis": True, "workers": len(workers)}
    if not ready:
        body["reason"] = f"no worker for {' and '.join(missing)} has sent a heartbeat in the last 15 s"
    return web.json_response(body, status=200 if ready else 503)


async def index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "shop.html")


def create_app(settings: Settings) -> web.Application:
    middlewares = [metrics_routes.count_requests, errors_as_json, limits.guard_public]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    app[settings_key] = settings
    app.cleanup_ctx.append(_resources)
    app.on_shutdown.append(_going_away)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    metrics_routes.setup(app)
    app.router.add_static("/static/", STATIC, append_version=False)
    web_routes.setup(app)
    telegram_routes.setup(app)
    slack_routes.setup(app)
    admin_routes.setup(app)
    faq_routes.setup(app)
    handoff_routes.setup(app)
    openapi.setup(app)
    return app
