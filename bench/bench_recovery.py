"""Recovery benchmark: kill each part of the product under steady load; how soon is everyone answered again?

    .venv/bin/python bench/bench_recovery.py [--models models] [--rate 5] [--down 2]
                                             [--faults nlu,dialogue,redis,gateway]

Starts Redis with its append-only file synced every second (as ``scripts/start.sh``
runs it), one NLU worker, one dialogue worker and one gateway, opens web sessions
and posts shopper messages at a steady rate, each to a session with no message in
flight, as the widget does: a POST that is refused or fails is sent again with the
same client message id every half second, and a socket that closes is opened
again with ``after=`` the last message it had.

Then, one fault at a time, with the load running: the process is killed (SIGKILL;
the gateway gets SIGTERM, as an orchestrator stops it), stays down ``--down``
seconds and is started again on the same port. For each fault it reports:

* ``all_answered_s``: from the restart (the process started again) until every
  message sent before the restart had its reply, and ``after_ready_s``, the same
  from the moment the restarted process was ready (a worker's first heartbeat, sent
  once its models are loaded; the gateway's /healthz; Redis's PONG). The target
  is 10 s.
* ``p99_after_ms``: the p99 of the replies to messages sent in the 10 s after
  the restart; ``lost`` (no reply 30 s after the load stops) and ``duplicated``
  (a second reply to one message) over the whole run;
* for the gateway, ``exit_s`` (SIGTERM to exit, target 5 s) and the close codes
  its sockets got (1001: going away, reconnect).

Hand-offs are switched off in the benchmark's policies so every message gets
exactly one reply. Writes bench/results/recovery-<device>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from bench_nlu import chat_messages  # noqa: E402
from bench_pipeline import bench_env  # noqa: E402
from services import RedisServer, gateway, wait_for, wait_ready, worker  # noqa: E402

FAULTS = ("nlu", "dialogue", "redis", "gateway")


class Shopper:
    """A web session: at most one message in flight; replies read off a socket that reconnects."""

    def __init__(self, sid: str, url: str):
        self.sid, self.url = sid, url
        self.last_id: str | None = None
        self.pending: tuple[str, float] | None = None  # (client message id, sent at)
        self.ws: aiohttp.ClientWebSocketResponse | None = None


class Load:
    def __init__(self, http: aiohttp.ClientSession, shoppers: list[Shopper], texts: list[str], rate: float):
        self.http, self.shoppers, self.texts, self.rate = http, shoppers, texts, rate
        self.sent: list[tuple[float, float | None]] = []  # [sent at, replied at]
        self.index: dict[str, int] = {}  # client message id -> row of self.sent
        self.duplicated = 0
        self.refused = 0  # POSTs refused or failed (sent again)
        self.close_codes: Counter[int] = Counter()
        self.stopping = False
        self.rng = random.Random(7)
        self.posts: set[asyncio.Task] = set()  # held here: the loop keeps only weak references to tasks

    async def read(self, s: Shopper) -> None:
        while not self.stopping:
            try:
                after = f"&after={s.last_id}" if s.last_id else ""
                async with self.http.ws_connect(f"{s.url}/web/ws?session_id={s.sid}{after}") as ws:
                    s.ws = ws
                    async for frame in ws:
                        if frame.type != aiohttp.WSMsgType.TEXT:
                            continue
                        msg = json.loads(frame.data)
                        if msg.get("type") != "message":
                            continue
                        s.last_id = msg["id"]
                        if s.pending is None:
                            self.duplicated += 1  # a reply to nothing
                            continue
                        row = self.index[s.pending[0]]
                        self.sent[row] = (self.sent[row][0], time.monotonic())
                        s.pending = None
                    self.close_codes[ws.close_code or 0] += 1
            except (TimeoutError, aiohttp.ClientError, OSError):
                self.close_codes[-1] += 1  # could not connect (the gateway is down)
            await asyncio.sleep(0.5)

    async def post(self, s: Shopper, text: str, cmid: str) -> None:
        body = {"session_id": s.sid, "text": text, "client_message_id": cmid}
        while not self.stopping:
            try:
                async with self.http.post(f"{s.url}/web/messages", json=body) as r:
                    if r.status == 202:
                        return
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
            self.refused += 1
            await asyncio.sleep(0.5)

    async def run(self, until: asyncio.Event) -> None:
        t0, n = time.monotonic(), 0
        while not until.is_set():
            target = int((time.monotonic() - t0) * self.rate) + 1
            while n < target:
                idle = [s for s in self.shoppers if s.pending is None]
                if not idle:
                    break
                s = self.rng.choice(idle)
                cmid = uuid.uuid4().hex
                s.pending = (cmid, time.monotonic())
                self.index[cmid] = len(self.sent)
                self.sent.append((s.pending[1], None))
                task = asyncio.create_task(self.post(s, self.rng.choice(self.texts), cmid))
                self.posts.add(task)
                task.add_done_callback(self.posts.discard)
                n += 1
            await asyncio.sleep(0.01)


def _beat_since(redis_url: str, role: str, since: float) -> bool:
    """Has the worker ``role`` sent a heartbeat since ``since`` (wall clock)? It does once its models are
    loaded: what ``/readyz`` means by "can answer"."""
    import redis as redis_py

    from shopbot.store import WORKERS

    r = redis_py.Redis.from_url(redis_url)
    try:
        return any(name.startswith(f"{role}@".encode()) for name in r.zrangebyscore(WORKERS, since, "+inf"))
    finally:
        r.close()


async def main_async(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    redis = RedisServer(tmp / "redis", aof=True).start()
    env = bench_env(tmp, redis.url, args.models, args.env)
    texts = chat_messages(Path(args.data))
    procs = {
        "nlu": worker(env, tmp / "worker-nlu.log", "nlu"),
        "dialogue": worker(env, tmp / "worker-dialogue.log", "dialogue"),
    }
    g, url = gateway(env, tmp / "gateway.log")
    procs["gateway"] = g
    out: dict = {"models": str(args.models), "rate": args.rate, "down_s": args.down, "faults": []}
    try:
        wait_ready(url, 300, procs["nlu"])
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            shoppers = []
            for _ in range(args.sessions):
                async with http.post(f"{url}/web/sessions", json={}) as r:
                    shoppers.append(Shopper((await r.json())["session_id"], url))
            load = Load(http, shoppers, texts, args.rate)
            readers = [asyncio.create_task(load.read(s)) for s in shoppers]
            stop = asyncio.Event()
            sender = asyncio.create_task(load.run(stop))
            await asyncio.sleep(args.settle)
            for fault in args.faults.split(","):
                res = await inject(fault, procs, redis, url, load, args)
                print(json.dumps(res), flush=True)
                out["faults"].append(res)
            stop.set()
            await sender
            deadline = time.monotonic() + 30
            while any(s.pending for s in shoppers) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            load.stopping = True
            for s in shoppers:
                if s.ws is not None:
                    await s.ws.close()
            for t in readers:
                t.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            out["sent"] = len(load.sent)
            out["lost"] = sum(1 for _, r in load.sent if r is None)
            out["duplicated"] = load.duplicated
            out["posts_sent_again"] = load.refused
            out["socket_closes"] = {str(k): v for k, v in sorted(load.close_codes.items())}
    finally:
        for p in procs.values():
            p.stop()
        redis.stop()
    return out


async def inject(fault: str, procs: dict, redis: RedisServer, url: str, load: Load, args) -> dict:
    res: dict = {"fault": fault}
    codes_before = Counter(load.close_codes)
    killed = time.monotonic()
    if fault == "redis":
        redis.proc.send_signal(signal.SIGKILL)
        redis.proc.wait(10)
    elif fault == "gateway":
        procs["gateway"].proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(procs["gateway"].proc.wait, 30)
        res["exit_s"] = round(time.monotonic() - killed, 2)
    else:
        procs[fault].kill()
    await asyncio.sleep(max(0.0, args.down - (time.monotonic() - killed)))
    restarted = time.monotonic()
    if fault == "redis":
        await asyncio.to_thread(redis.start)
    else:
        p, wall = procs[fault], time.time()
        p.start()
        if fault == "gateway":
            await asyncio.to_thread(
                wait_for, lambda: urllib.request.urlopen(url + "/healthz", timeout=1).status == 200, 60, "gateway"
            )
        else:
            await asyncio.to_thread(wait_for, lambda: _beat_since(redis.url, fault, wall), 120, f"{fault} worker")
    ready = time.monotonic()
    before = [i for i, (t, _) in enumerate(load.sent) if t < restarted]
    await asyncio.sleep(args.after)
    waiting = [i for i in before if load.sent[i][1] is None]
    last = max((load.sent[i][1] for i in before if load.sent[i][1] is not None), default=restarted)
    res["down_s"] = round(restarted - killed, 2)
    res["ready_s"] = round(ready - restarted, 2)
    res["all_answered_s"] = None if waiting else round(max(0.0, last - restarted), 2)
    res["after_ready_s"] = None if waiting else round(max(0.0, last - ready), 2)
    res["unanswered_after_s"] = {str(args.after): len(waiting)}
    lat = sorted(r - t for t, r in load.sent if restarted <= t < restarted + 10 and r is not None)
    res["p99_after_ms"] = round(statistics.quantiles(lat, n=100)[98] * 1000) if len(lat) >= 2 else None
    res["socket_closes"] = {str(k): v - codes_before[k] for k, v in load.close_codes.items() if v > codes_before[k]}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--rate", type=float, default=5, help="messages per second, steady")
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, in order: {', '.join(FAULTS)}")
    ap.add_argument("--down", type=float, default=2, help="seconds a killed part stays down")
    ap.add_argument("--settle", type=float, default=10, help="seconds of load before the first fault")
    ap.add_argument("--after", type=float, default=25, help="seconds of load after each restart")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the product processes (repeatable)")
    args = ap.parse_args()
    bad = set(args.faults.split(",")) - set(FAULTS)
    if bad:
        ap.error(f"unknown fault(s): {', '.join(sorted(bad))}; choose from {', '.join(FAULTS)}")
    out = asyncio.run(main_async(args))
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dest = ROOT / "bench" / "results" / f"recovery-{device}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: out.get(k) for k in ("sent", "lost", "duplicated")}), "->", dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
