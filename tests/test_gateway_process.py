"""The gateway process: what it costs to hold sockets, and how it goes away when told to stop."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
import redis
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


async def test_sockets_and_messages_in_bursts_cost_the_gateway_no_more_than_three_redis_connections(
    tmp_path, redis_server, platforms
):
    """Idle sockets cost memory, not Redis connections, and so does load: every socket of a gateway is
    read by one blocking reader, and all its other Redis traffic (requests, the Celery tasks it sends)
    shares two pools of one connection each at the default SHOPBOT_GATEWAY_REDIS_CONNECTIONS (3), whose
    users wait for a free connection, however many sockets open and messages arrive at once."""
    gw = lone_gateway(
        tmp_path, redis_server.url, 9, platforms, "sockets admin",
        SHOPBOT_SOCKETS_PER_IP="100000", SHOPBOT_RATE_IP_PER_MIN="1000000",
    )  # fmt: skip
    pid, port = gw["proc"].proc.pid, int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
    r = redis.Redis.from_url(gw["env"]["SHOPBOT_REDIS_URL"])
    queued = r.llen("nlu")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

            async def one(i: int):
                async with http.post(f"{gw['url']}/web/sessions", json={"locale": "en"}) as resp:
                    assert resp.status == 201, await resp.text()
                    sid = (await resp.json())["session_id"]
                ws = await http.ws_connect(f"{gw['url']}/web/ws?session_id={sid}")
                body = {"session_id": sid, "text": f"where is order {10000 + i}?", "client_message_id": f"m{i}"}
                async with http.post(f"{gw['url']}/web/messages", json=body) as resp:
                    assert resp.status == 202, await resp.text()
                return ws

            sockets = []
            for burst in range(3):
                sockets += await asyncio.gather(*(one(100 * burst + i) for i in range(100)))
                assert redis_connections(pid, port) <= 3
            await asyncio.sleep(1)
            assert sum(not ws.closed for ws in sockets) == 300
            assert redis_connections(pid, port) <= 3
            assert r.llen("nlu") - queued == 300  # every message queued for the NLU worker, over those pools
            for ws in sockets:
                await ws.close()
    finally:
        gw["proc"].stop()


def test_a_setting_that_cannot_be_used_stops_the_process_with_its_name_and_no_value(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "SHOPBOT_GATEWAY_REDIS_CONNECTIONS": "1", "SHOPBOT_SECRET_KEY": "", "HF_HUB_OFFLINE": "1"}
    env["SHOPBOT_RATE_IP_PER_MIN"] = "s3cret-looking-value"
    done = subprocess.run([sys.executable, "-m", "gateway"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "SHOPBOT_GATEWAY_REDIS_CONNECTIONS: Input should be greater than or equal to 3" in done.stderr
    assert "SHOPBOT_RATE_IP_PER_MIN" in done.stderr and "s3cret-looking-value" not in done.stderr
