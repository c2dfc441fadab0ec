"""A gateway told to stop (SIGTERM, as a deploy or a scale-in does) goes away gracefully."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
from services import lone_gateway


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
                assert ws.close_code == 1001 and b"going away" in (frame.extra or "").encode()
            closed_in = time.monotonic() - t0
        exit_code = await asyncio.to_thread(proc.wait, 10)
        exited_in = time.monotonic() - t0
    finally:
        gw["proc"].kill()
    assert closed_in < 2 and exited_in < 5, (closed_in, exited_in)
    assert exit_code == 0
