"""End-to-end benchmark: gateway, Redis and one worker on this machine, driven over HTTP and WebSocket.

    .venv/bin/python bench/bench_pipeline.py [--models models] [--rates 10,50] [--seconds 20]

For each rate it posts shopper messages (a realistic mix) at that rate for the
given time, each to a web session with no message in flight, and times POST ->
the reply on that session's socket. After the fixed rates it keeps raising the
rate until a step is not held. Writes bench/results/pipeline-<device>.json.

A rate is **held** when p99 <= 1 s, nothing is lost, duplicated or refused, at
least 95% of the rate was sent, and the queues do not grow: at the end of the
step's sending window no more than one second's worth of messages is still
waiting for its reply (messages wait in the workers' prefetch and batch buffers,
not only in the Celery queues, so the client's count is the one that tells).
In the same run, before the product starts (so nothing competes for the cores),
it measures the NLU alone, batched (batches of 128 through the runtime the
worker uses, with and without the retrieval encoder's pass), and prints the
ratio of the highest held rate to it. Then the
idle-socket row: how many idle WebSockets one gateway holds (``--idle-sockets``),
with its memory (RSS) and its Redis connections before and after.

Hand-offs are switched off in the benchmark's policies so every message gets
exactly one reply: a missing or second reply is then a lost or duplicated one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from bench_nlu import chat_messages  # noqa: E402
from services import RedisServer, gateway, product_env, redis_connections, wait_ready, worker  # noqa: E402


class Session:
    def __init__(self, sid: str, ws: aiohttp.ClientWebSocketResponse, post_url: str):
        self.sid, self.ws = sid, ws
        self.post_url = post_url  # the gateway its messages go to (with several, not the socket's)
        self.pending: tuple[str, float] | None = None  # (client message id, sent at)


async def open_sessions(http: aiohttp.ClientSession, urls: list[str], n: int) -> list[Session]:
    """``n`` sessions, their sockets spread over the gateways, each posting through the next gateway."""
    sessions = []
    for i in range(n):
        url = urls[i % len(urls)]
        async with http.post(f"{url}/web/sessions", json={}) as r:
            if r.status >= 300:
                raise RuntimeError(f"POST /web/sessions: {r.status} {await r.text()}")
            sid = (await r.json())["session_id"]
        ws = await http.ws_connect(f"{url}/web/ws?session_id={sid}")
        s = Session(sid, ws, urls[(i + 1) % len(urls)])
        asyncio.create_task(read_replies(s))
        sessions.append(s)
    return sessions


async def read_replies(s: Session) -> None:
    async for frame in s.ws:
        if frame.type != aiohttp.WSMsgType.TEXT:
            continue
        msg = json.loads(frame.data)
        if msg.get("type") != "message":
            continue
        if s.pending is None:
            SINK["unexpected"] += 1  # a reply to nothing: a duplicate
            continue
        SINK["latencies"].append(time.perf_counter() - s.pending[1])
        s.pending = None


SINK: dict = {"latencies": [], "unexpected": 0}  # the socket readers record here


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def watch_queues(redis_url: str, stop: asyncio.Event, peaks: dict[str, int]) -> None:
    """Sample the Celery queues' lengths: where messages wait when the product falls behind."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_url)
    try:
        while not stop.is_set():
            for q in ("nlu", "dialogue"):
                peaks[q] = max(peaks.get(q, 0), await r.llen(q))
            await asyncio.sleep(0.25)
    finally:
        await r.aclose()


async def run_rate(http, url, sessions, texts, rate: float, seconds: float, redis_url: str) -> dict:
    SINK["latencies"], SINK["unexpected"] = [], 0
    peaks: dict[str, int] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_queues(redis_url, stop, peaks))
    for s in sessions:
        s.pending = None
    rng = random.Random(int(rate))
    errors = backlog = sent = 0
    t0 = time.perf_counter()
    tasks = []

    async def post(s: Session, text: str, cmid: str) -> None:
        nonlocal errors
        try:
            async with http.post(
                f"{s.post_url}/web/messages", json={"session_id": s.sid, "text": text, "client_message_id": cmid}
            ) as r:
                if r.status != 202:
                    errors += 1
        except aiohttp.ClientError:
            errors += 1

    while (now := time.perf_counter() - t0) < seconds:
        target = int(now * rate) + 1
        while sent < target:
            idle = [s for s in sessions if s.pending is None]
            if not idle:
                backlog += 1
                break
            s = rng.choice(idle)
            cmid = uuid.uuid4().hex
            s.pending = (cmid, time.perf_counter())  # before the task runs: never two in flight on one session
            tasks.append(asyncio.create_task(post(s, rng.choice(texts), cmid)))
            sent += 1
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - t0
    in_flight_at_end = sum(1 for s in sessions if s.pending)
    await asyncio.gather(*tasks)
    deadline = time.perf_counter() + 30
    while any(s.pending for s in sessions) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await watcher
    lost = sum(1 for s in sessions if s.pending)
    lat = sorted(SINK["latencies"])
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    res = {
        "target_msgs_per_s": rate,
        "sent": sent,
        "achieved_msgs_per_s": round(sent / elapsed, 1),
        "replies": len(lat),
        "unanswered_30s_after": lost,  # still queued (overload) or lost
        "duplicated": SINK["unexpected"],
        "http_errors": errors,
        "no_idle_session": backlog,
        "p50_ms": round(q[49] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
        "peak_queue_nlu": peaks.get("nlu", 0),
        "peak_queue_dialogue": peaks.get("dialogue", 0),
        "in_flight_at_end_of_window": in_flight_at_end,
    }
    res["held"] = held(res)
    return res


def held(res: dict) -> bool:
    """The service level: p99 <= 1 s, nothing lost, duplicated or refused, the rate sent, queues not growing."""
    return bool(
        not (res["unanswered_30s_after"] or res["duplicated"] or res["http_errors"])
        and res["achieved_msgs_per_s"] >= 0.95 * res["target_msgs_per_s"]
        and res["p99_ms"] <= 1000
        and res["in_flight_at_end_of_window"] <= max(5, res["target_msgs_per_s"])
    )


def nlu_only(models: Path, texts: list[str], int8: bool, seconds: float = 8.0, batch: int = 128) -> dict:
    """Messages per second through the NLU runtime alone, in batches (nothing else running), and the same
    with the retrieval encoder's pass the NLU worker now adds (dialogue.retrieval)."""
    from dialogue import load_policy
    from dialogue.retrieval import retrieval_texts
    from nlu.embed import Embedder
    from nlu.inference import NLU

    nlu = NLU.load(models / "intent", models / "sentiment", int8=int8)
    emb = Embedder.load()
    policy = load_policy()
    rng = random.Random(0)

    def rate(with_retrieval: bool) -> float:
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            chunk = rng.sample(texts, batch)
            anns = nlu.annotate(chunk)
            if with_retrieval:
                emb.embed(
                    [
                        t
                        for x, a in zip(chunk, anns, strict=True)
                        for t in retrieval_texts(policy, x, a.language, a.intent)
                    ]
                )
            done += batch
        return round(done / (time.perf_counter() - t0), 1)

    nlu.annotate(texts[:batch])  # warm-up
    return {"batch": batch, "nlu_models_msgs_per_s": rate(False), "nlu_pass_with_retrieval_msgs_per_s": rate(True)}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def idle_sockets(url: str, gw_pid: int, redis_port: int, n: int) -> dict:
    """Open ``n`` sessions with a socket each and leave them idle: the gateway's memory and Redis connections."""
    before = {"rss_mb": rss_mb(gw_pid), "redis_connections": redis_connections(gw_pid, redis_port)}
    opened = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for i in range(0, n, 200):

            async def one():
                async with http.post(f"{url}/web/sessions", json={}) as r:
                    sid = (await r.json())["session_id"]
                return await http.ws_connect(f"{url}/web/ws?session_id={sid}", heartbeat=None, autoping=True)

            opened += await asyncio.gather(*(one() for _ in range(min(200, n - i))))
        await asyncio.sleep(3)
        after = {"rss_mb": rss_mb(gw_pid), "redis_connections": redis_connections(gw_pid, redis_port)}
        alive = sum(not ws.closed for ws in opened)
        for ws in opened:
            await ws.close()
    return {"idle_sockets": n, "still_open": alive, "gateway_before": before, "gateway_with_sockets": after}


def nlu_share(log: Path, since: float, until: float) -> float:
    busy = 0.0
    for line in log.read_text(errors="replace").splitlines():
        if '"NLU batch"' not in line:
            continue
        rec = json.loads(line)
        ts = time.mktime(time.strptime(rec["ts"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        if since <= ts <= until:
            busy += rec["ms"] / 1000
    return round(busy / max(until - since, 1e-9), 3)


def bench_env(tmp: Path, redis_url: str, models: str, extra: list[str]) -> dict[str, str]:
    """The product's settings for a benchmark: its policies with hand-offs off (so every message gets
    exactly one reply: a missing or second one is a lost or duplicated one), the product's defaults
    rather than the tests' short ones, no rate limits for the one client address, and ``extra``
    (NAME=VALUE) last."""
    raw = yaml.safe_load((ROOT / "dialogue" / "policies.yaml").read_text(encoding="utf-8"))
    raw["handoff"]["intents"] = []
    raw["thresholds"].update(misunderstood_handoff_after=10**6, angry_sentiment_score=-2)
    policies = tmp / "policies.yaml"
    policies.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return product_env(
        redis_url, Path(models).resolve(), tmp, policies, SHOPBOT_LOG_LEVEL="INFO",
        # the product's defaults, not the tests' short ones
        SHOPBOT_STALL_AFTER_S="10", SHOPBOT_SWEEP_INTERVAL_S="2",
        # every simulated shopper comes from this one client IP, faster than one person types
        SHOPBOT_RATE_IP_PER_MIN="1000000", SHOPBOT_RATE_SESSION_PER_MIN="1000", SHOPBOT_SOCKETS_PER_IP="1000000",
        **dict(e.split("=", 1) for e in extra),
    )  # fmt: skip


async def main_async(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    redis = RedisServer(tmp / "redis").start()
    env = bench_env(tmp, redis.url, args.models, args.env)
    texts = chat_messages(Path(args.data))
    int8 = any(
        e.split("=", 1)[0] == "SHOPBOT_NLU_INT8" and e.split("=", 1)[1].lower() in ("1", "true") for e in args.env
    )
    out: dict = {"models": str(args.models), "int8": int8, "steps": []}
    out["nlu_only"] = nlu_only(Path(args.models).resolve(), texts, int8)
    print(json.dumps({"nlu_only": out["nlu_only"]}), flush=True)
    w = worker(env, tmp / "worker.log", "nlu")
    wd = worker(env, tmp / "worker-dialogue.log", "dialogue")
    g, url = gateway(env, tmp / "gateway.log")
    # Scale-out rows: more gateways (sessions' sockets spread over them, messages posted through another one)
    # and more dialogue workers, all on the one Redis.
    more_gw = [gateway(env, tmp / f"gateway-{i}.log") for i in range(2, args.gateways + 1)]
    more_wd = [
        worker(env, tmp / f"worker-dialogue-{i}.log", "dialogue", name=f"dialogue{i}")
        for i in range(2, args.dialogue_workers + 1)
    ]
    out["gateways"], out["dialogue_workers"] = args.gateways, args.dialogue_workers
    try:
        wait_ready(url, 300, w)
        import os

        pids = {"nlu worker": w.proc.pid, "dialogue worker": wd.proc.pid, "gateway": g.proc.pid,
                "redis": redis.proc.pid, "benchmark client": os.getpid(),
                **{f"gateway {i}": p.proc.pid for i, (p, _) in enumerate(more_gw, 2)},
                **{f"dialogue worker {i}": p.proc.pid for i, p in enumerate(more_wd, 2)}}  # fmt: skip
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            sessions = await open_sessions(http, [url, *(u for _, u in more_gw)], args.sessions)
            await run_rate(http, url, sessions, texts, 5, 5, redis.url)  # warm-up
            rates = [float(r) for r in args.rates.split(",")]
            step = 0
            while True:
                rate = rates[step] if step < len(rates) else rates[-1] * 1.5 ** (step - len(rates) + 1)
                t0 = time.time()
                cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
                res = await run_rate(http, url, sessions, texts, rate, args.seconds, redis.url)
                res["nlu_busy_share"] = nlu_share(tmp / "worker.log", t0, time.time())
                # CPU used per wall second by each process (2.0 = both cores).
                res["cpu_cores"] = {
                    name: round((cpu_seconds(pid) - cpu0[name]) / (time.time() - t0), 2) for name, pid in pids.items()
                }
                print(json.dumps(res), flush=True)
                out["steps"].append(res)
                if step >= len(rates) - 1 and not res["held"]:
                    break
                step += 1
            for s in sessions:
                await s.ws.close()
        out["highest_held_msgs_per_s"] = max((s["achieved_msgs_per_s"] for s in out["steps"] if s["held"]), default=0)
        out["held_over_nlu_only"] = round(out["highest_held_msgs_per_s"] / out["nlu_only"]["nlu_models_msgs_per_s"], 2)
        if args.idle_sockets:
            out["sockets"] = await idle_sockets(
                url, g.proc.pid, int(redis.url.rsplit(":", 1)[1].split("/")[0]), args.idle_sockets
            )
            print(json.dumps({"sockets": out["sockets"]}), flush=True)
    finally:
        g.stop()
        for p in [*(p for p, _ in more_gw), *more_wd]:
            p.stop()
        w.stop()
        wd.stop()
        redis.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--rates", default="10,50")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the product processes (repeatable)")
    ap.add_argument("--idle-sockets", type=int, default=2000, help="idle WebSockets for the socket row (0: none)")
    ap.add_argument(
        "--gateways", type=int, default=1, help="gateways (scale-out row: sockets on one, posts to another)"
    )
    ap.add_argument("--dialogue-workers", type=int, default=1, help="dialogue workers")
    args = ap.parse_args()
    out = asyncio.run(main_async(args))
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dest = ROOT / "bench" / "results" / f"pipeline-{device}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    summary = {k: out[k] for k in ("highest_held_msgs_per_s", "held_over_nlu_only", "nlu_only")}
    print(json.dumps(summary), "->", dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
