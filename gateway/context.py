"""What the gateway's route modules share: typed app keys and small request helpers."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from celery import Celery
from sqlalchemy.engine import Engine

from admin.access import AuditLog, TokenStore
from admin.credentials import VERSION_KEY, Channels, CredentialStore, LiveChannels
from channels.base import InboundMessage
from handoff.queue import HandoffQueue
from shopbot import metrics
from shopbot.corrections import CorrectionStore
from shopbot.settings import Settings
from shopbot.store import ConversationStore
from workers.app import ANNOTATE, SLACK_CALL, SYNC_CONVERSATION

from .fanout import LogFanout

settings_key = web.AppKey("settings", Settings)
store_key = web.AppKey("store", ConversationStore)
aredis_key = web.AppKey("aredis", aioredis.Redis)
celery_key = web.AppKey("celery", Celery)
queue_key = web.AppKey("handoff_queue", HandoffQueue)
engine_key = web.AppKey("engine", Engine)
credentials_key = web.AppKey("credentials", CredentialStore)
channels_key = web.AppKey("channels", LiveChannels)
tokens_key = web.AppKey("tokens", TokenStore)
audit_key = web.AppKey("audit", AuditLog)
fanout_key = web.AppKey("fanout", LogFanout)
http_key = web.AppKey("http", aiohttp.ClientSession)  # the gateway's own calls out (Slack's conversations.members)
log = logging.getLogger(__name__)


async def current_channels(app: web.Application) -> Channels:
    """The channel credentials in force: one Redis GET per request, a reload from SQL only after a change."""
    version = await app[aredis_key].get(VERSION_KEY)
    live = app[channels_key]
    return live.cached(version) or await asyncio.to_thread(live.for_version, version)


def json_error(status: int, reason: str, **extra: object) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status)


async def read_json(request: web.Request) -> object:
    if request.content_type not in ("application/json", "text/plain", "application/octet-stream"):
        raise web.HTTPUnsupportedMediaType(
            text=f"send JSON (Content-Type: application/json), not {request.content_type}"
        )
    raw = await request.read()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise web.HTTPBadRequest(text=f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise web.HTTPBadRequest(text="body is not valid JSON: nested too deeply") from None


async def accept(app: web.Application, msg: InboundMessage) -> tuple[str, bool]:
    """Record and queue one shopper message, from any channel; (message id, duplicate)."""
    store = app[store_key]
    cid = msg.conversation_id
    mid, duplicate = await asyncio.to_thread(store.record_inbound, cid, msg.text, msg.id, msg.meta())
    if not duplicate:
        try:
            await asyncio.to_thread(enqueue_annotation, app, cid, mid)
        except Exception:  # noqa: BLE001 - recorded already; the worker's sweeper re-queues it
            log.warning("could not queue a recorded message; the sweeper will", extra={"conversation_id": cid})
        metrics.MESSAGES_IN.labels(msg.channel).inc()
        log.info("message accepted", extra={"conversation_id": cid, "message_id": mid})
    return mid, duplicate


def correction_store(app: web.Application) -> CorrectionStore:
    """Agents' corrections (the API and the Slack desk), checked against the intents of the gateway's policies."""
    return CorrectionStore(app[engine_key], app[store_key], frozenset(app[queue_key].policy.intents))


def enqueue_annotation(app: web.Application, cid: str, mid: str) -> None:
    app[celery_key].send_task(ANNOTATE, args=[cid, mid])  # routed to "nlu" by the app's task_routes


def enqueue_sync(app: web.Application, cid: str) -> None:
    """Have a worker send the conversation's new replies to its platform and update the agents' desk."""
    app[celery_key].send_task(SYNC_CONVERSATION, args=[cid])


def enqueue_slack_call(app: web.Application, method: str, **params: object) -> None:
    app[celery_key].send_task(SLACK_CALL, args=[method, params])
