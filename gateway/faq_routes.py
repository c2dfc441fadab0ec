"""The unanswered questions, grouped by meaning, and adding an FAQ entry from a group (admin API).

``GET /admin/api/analytics/unanswered`` answers from the last grouping (``dialogue.unanswered``), which the
NLU worker computes: the first call, or one after the result is older than 10 minutes, queues it
(one at a time) and says ``computing`` until it is there. ``POST /admin/api/faq`` adds an entry to the
shop's FAQ (admin role, audited); the dialogue workers answer from it within their refresh time (30 s).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web
from sqlalchemy import insert, select

from dialogue import unanswered
from dialogue.shop_data import faq
from workers.app import GROUP_UNANSWERED

from .admin_routes import PREFIX, audit, requires
from .context import aredis_key, celery_key, engine_key, json_error
from .schemas import NewFaqEntry, parse_body

STALE_S = 600.0  # a grouping older than this is computed again (and served meanwhile)
RUNNING_TTL_S = 300  # a computation that never reported back is tried again after this


@requires("viewer")
async def unanswered_groups(request: web.Request) -> web.Response:
    try:
        days = float(request.query.get("days", "30"))
    except ValueError:
        return json_error(400, "days must be a number")
    if not 1 <= days <= 365:
        return json_error(400, "days must be between 1 and 365")
    r = request.app[aredis_key]
    raw = await r.get(unanswered.RESULT_KEY)
    result: dict[str, Any] | None = json.loads(raw) if raw else None
    fits = result is not None and result.get("days") == days
    if not fits or time.time() - float(result.get("computed_at") or 0) > STALE_S:  # type: ignore[union-attr]
        if await r.set(unanswered.RUNNING_KEY, "1", nx=True, ex=RUNNING_TTL_S):
            request.app[celery_key].send_task(GROUP_UNANSWERED, args=[days])
    if not fits:
        return web.json_response({"status": "computing", "computed_at": None, "days": days, "groups": []})
    return web.json_response(result)


@requires("admin")
async def add_faq_entry(request: web.Request) -> web.Response:
    row = await parse_body(request, NewFaqEntry)
    audit(request, "faq.add", row.id)

    def add() -> bool:
        with request.app[engine_key].begin() as conn:
            if conn.execute(select(faq.c.id).where(faq.c.id == row.id)).first() is not None:
                return False
            conn.execute(insert(faq), [row.model_dump()])
            return True

    if not await asyncio.to_thread(add):
        return json_error(409, f"an FAQ entry {row.id!r} exists already")
    return web.json_response({"id": row.id}, status=201)


def setup(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/analytics/unanswered", unanswered_groups)
    app.router.add_post(f"{PREFIX}/faq", add_faq_entry)
