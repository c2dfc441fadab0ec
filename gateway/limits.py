"""The public web endpoints' guards: rate limits (per client IP, per chat session) and allowed origins.

Limits are counted in Redis, so every gateway shares them: a fixed one-minute
window per key (``sb:rl:<bucket>:<minute>``). Over the limit, HTTP gets a 429
with ``Retry-After`` and a message for the shopper in their language; the
socket gets an error frame that says the same, and the widget shows it.

Origins: a browser sends ``Origin`` with every cross-site request and every
WebSocket handshake. The gateway's own pages are always allowed; other pages
only when the shop listed their origin (the ``web`` channel entry's
``allowed_origins``, or ``SHOPBOT_WEB_ALLOWED_ORIGINS`` before one is set).
A request without ``Origin`` is not from another site's page and is allowed.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from aiohttp import web

from .context import aredis_key, current_channels, queue_key, settings_key

PUBLIC_PREFIX = "/web/"
WINDOW_S = 60


class Limited(Exception):
    def __init__(self, retry_after: int, what: str):
        super().__init__(what)
        self.retry_after = retry_after
        self.what = what

    @property
    def reason(self) -> str:
        return f"too many {self.what}: try again in {self.retry_after} s"


def answer_429(exc: Limited, **extra: object) -> web.Response:
    body = {"error": exc.reason, "retry_after": exc.retry_after, **extra}
    return web.json_response(body, status=429, headers={"Retry-After": str(exc.retry_after)})


def client_ip(request: web.Request) -> str:
    if request.app[settings_key].trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]  # the address our own proxy saw
    return request.remote or "unknown"


async def hit(app: web.Application, bucket: str, limit: int, what: str) -> None:
    """Count one request against ``bucket``; raises ``Limited`` past ``limit`` a minute."""
    window = int(time.time() // WINDOW_S)
    k = f"sb:rl:{bucket}:{window}"
    async with app[aredis_key].pipeline(transaction=False) as p:
        p.incr(k)
        p.expire(k, WINDOW_S + 5)
        n, _ = await p.execute()
    if n > limit:
        raise Limited(max(1, int((window + 1) * WINDOW_S - time.time()) + 1), what)


async def per_ip(request: web.Request) -> None:
    s = request.app[settings_key]
    await hit(request.app, f"ip:{client_ip(request)}", s.rate_ip_per_min, "requests from your address")


async def per_session(app: web.Application, conversation_id: str) -> None:
    s = app[settings_key]
    await hit(app, f"session:{conversation_id}", s.rate_session_per_min, "messages in this chat")


def language_of(locale: str | None) -> str:
    return "zh" if (locale or "").lower().startswith("zh") else "en"


def language(request: web.Request, locale: str | None = None) -> str:
    return language_of(locale or request.headers.get("Accept-Language"))


def polite(app: web.Application, lang: str) -> str:
    return app[queue_key].policy.message("rate_limited", lang)


def too_many(request: web.Request, exc: Limited, locale: str | None = None) -> web.Response:
    """The 429 for a shopper: with a line in their language the widget shows."""
    return answer_429(exc, message=polite(request.app, language(request, locale)))


def _own_origins(request: web.Request) -> set[str]:
    own = {f"{request.scheme}://{request.host}"}
    public = request.app[settings_key].public_url
    if public:
        p = urlsplit(public)
        own.add(f"{p.scheme}://{p.netloc}")
    return own


async def origin_allowed(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    origin = origin.rstrip("/")
    if origin in _own_origins(request):
        return True
    return origin in (await current_channels(request.app)).web_origins


CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "600",
}


@web.middleware
async def guard_public(request: web.Request, handler) -> web.StreamResponse:
    """Origins and the per-IP limit for ``/web/...``; CORS answers for the allowed origins."""
    if not request.path.startswith(PUBLIC_PREFIX):
        return await handler(request)
    if not await origin_allowed(request):
        return web.json_response(
            {"error": f"origin {request.headers.get('Origin')} may not use this chat: ask the shop to allow it"},
            status=403,
        )
    origin = request.headers.get("Origin")
    cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}
    if request.method == "OPTIONS":
        return web.Response(status=204, headers={**cors, **CORS_HEADERS})
    try:
        await per_ip(request)
    except Limited as exc:
        resp = too_many(request, exc)
        resp.headers.update(cors)
        return resp
    resp = await handler(request)
    if cors and not resp.prepared:
        resp.headers.update(cors)
    return resp
