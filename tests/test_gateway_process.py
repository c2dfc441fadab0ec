"""The gateway process: what it costs to hold sockets, and how it goes away when told to stop."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
from services import lone_gateway, redis_connections


async def test_sigterm_closes_the_sockets_with_going_away_and_exits_within_the_timeout(
    tmp_path, redis_server, platforms
):
    gw = lone_gateway(tmp_path, redis_server.url, 8, platforms, "shutdown admin")
    proc = gw["proc"].proc
    try:
        async with aiohttp.ClientSession() as http:
            sockets = []
            for _ in range(3):
                async with http.post(f"{gw['url']}/web/sessions", json={"locale": "en"}) as r:
                    assert r.status == 201
                    sid = (await r.json())["session_id"]
                sockets.append(await http.ws_connect(f"{gw['url']}/web/ws?session_id={sid}"))
            await asyncio.sleep(0.5)
            t0 = time.monotonic()
            os.kill(proc.pid, signal.SIGTERM)
            for ws in sockets:
                # The widget reads a close frame with 1001 ("going away": reconnect), not a dropped
                # connection (1006), and at once, not after the sockets' heartbeat gives up.
                frame = await asyncio.wait_for(ws.receive(), 3)
                assert frame.type == aiohttp.WSMsgType.CLOSE, frame
                # (the frame's code: the client's own close_code turns 1006 when the process exits before
                # the client has sent its half of the closing handshake, which it need not wait for)
                assert frame.data == 1001 and "going away" in (frame.extra or "")
            closed_in = time.monotonic() - t0
        exit_code = await asyncio.to_thread(proc.wait, 10)
        exited_in = time.monotonic() - t0
    finally:
        gw["proc"].kill()
    assert closed_in < 2 and exited_in < 5, (closed_in, exited_in)
    assert exit_code == 0


async def test_sockets_opened_in_bursts_cost_the_gateway_noredis_connections(tmp_path, redis_server, platforms):
    """Idle sockets cost memory, not Redis connections: every socket of a gateway is read by one blocking
    reader, and its other Redis traffic shares two small pools (SHOPBOT_GATEWAY_REDIS_CONNECTIONS each)
    whose users wait for a free connection, however many sockets open at once."""
    gw = lone_gateway(
        tmp_path, redis_server.url, 9, platforms, "sockets admin",
        SHOPBOT_GATEWAY_REDIS_CONNECTIONS="2", SHOPBOT_SOCKETS_PER_IP="100000", SHOPBOT_RATE_IP_PER_MIN="1000000",
    )  # fmt: skip
    pid, port = gw["proc"].proc.pid, int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
    cap = 2 + 2 + 1 + 2  # the two pools, the log reader, Celery's producer pool
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

            async def one():
                async with http.post(f"{gw['url']}/web/sessions", json={"locale": "en"}) as r:
                    assert r.status == 201, await r.text()
                    sid = (await r.json())["session_id"]
                return await http.ws_connect(f"{gw['url']}/web/ws?session_id={sid}")

            sockets = []
            for _ in range(3):
                sockets += await asyncio.gather(*(one() for _ in range(100)))
                assert redis_connections(pid, port) <= cap
            await asyncio.sleep(1)
            assert sum(not ws.closed for ws in sockets) == 300
            assert redis_connections(pid, port) <= cap
            for ws in sockets:
                await ws.close()
    finally:
        gw["proc"].stop()
