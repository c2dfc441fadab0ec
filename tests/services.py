"""Real services for the pipeline tests: a redis-server, a Celery worker and the gateway, as processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENT_TOKEN = "test-agent-token-1234"
SECRET_KEY = "q8Yb1sWq3r0Qm7a1Yc4g2jv9m5k0Zp6LxT3nR8uV2wE="  # test-only: encrypts the stored credentials


def redis_connections(pid: int, redis_port: int) -> int:
    """TCP connections from process ``pid`` to the Redis port (its sockets' inodes in /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            n += int(cols[2].rsplit(":", 1)[1], 16) == redis_port and cols[9] in inodes
    return n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        try:
            got = check()
            if got:
                return got
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    raise TimeoutError(f"{what} not ready after {timeout}s:\n{tail}")


class RedisServer:
    def __init__(self, workdir: Path, aof: bool = False):
        self.port = free_port()
        self.dir = workdir
        self.aof = aof  # append-only file, synced every second (as ``scripts/start.sh`` runs it)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.aof else "no", "--appendfsync", "everysec", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def ping() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        wait_for(ping, 10, "redis-server", self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Process:
    """A product process (worker or gateway) with its log in a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name, self.args, self.env, self.log = name, args, env, log
        self.proc: subprocess.Popen | None = None
        self.metrics_url: str | None = None  # a worker's own /metrics

    def start(self) -> Process:
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group, as an OOM killer or a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


BUSY_AFTER_S = 20  # a hand-off nobody claims this long gets the "keep waiting?" message
TELEGRAM_TOKEN = "123456:test-token-not-a-secret"
TELEGRAM_SECRET = "test-webhook-secret"
SLACK_TOKEN = "xoxb-test-token"
SLACK_SECRET = "test-signing-secret"
AGENT_CHANNEL = "C0AGENTS"
SLACK_TEAM = "T0SHOP"
SLACK_CLIENT_ID = "5012340000.7001"  # the Slack app's OAuth client ("Add to Slack")
SLACK_CLIENT_SECRET = "test-client-secret-0001"
INSTALL_TEAMS = ("T0NEWSHOP", "T0LATE", "T0DESK2", "T0ADDED", "T0EVIL1", "T0GONE", "T0OTHERAPP", "T0REVOKED", "T0FAILS")


def platform_env(platforms: dict) -> dict[str, str]:
    """Settings that point the product at the local Telegram and Slack servers."""
    return {
        "SHOPBOT_TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "SHOPBOT_TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
        "SHOPBOT_TELEGRAM_API_BASE_URL": platforms["telegram_url"],
        "SHOPBOT_SLACK_BOT_TOKEN": SLACK_TOKEN,
        "SHOPBOT_SLACK_SIGNING_SECRET": SLACK_SECRET,
        "SHOPBOT_SLACK_API_BASE_URL": platforms["slack_url"],
        "SHOPBOT_SLACK_AGENT_CHANNEL": AGENT_CHANNEL,
        "SHOPBOT_SLACK_TEAM_ID": SLACK_TEAM,  # the workspace of the recorded payloads in tests/fixtures/slack
        "SHOPBOT_SLACK_CLIENT_ID": SLACK_CLIENT_ID,
        "SHOPBOT_SLACK_CLIENT_SECRET": SLACK_CLIENT_SECRET,
        # The workspaces the tests connect by "Add to Slack" (besides SHOPBOT_SLACK_TEAM_ID); others are refused
        "SHOPBOT_SLACK_INSTALL_TEAMS": ",".join(INSTALL_TEAMS),
        # Slack's authorize page, as the local Slack server would have it (the test plays the admin there)
        "SHOPBOT_SLACK_AUTHORIZE_URL": platforms["slack_url"].rstrip("/").removesuffix("/api") + "/oauth/v2/authorize",
    }


def product_env(redis_url: str, models_dir: Path, tmp: Path, policies: Path | None = None, **extra: str) -> dict:
    env = dict(os.environ)
    env.update(
        SHOPBOT_REDIS_URL=redis_url,
        SHOPBOT_MODELS_DIR=str(models_dir),
        SHOPBOT_DATABASE_URL=f"sqlite:///{tmp / 'transcripts.db'}",
        SHOPBOT_AGENT_TOKEN=AGENT_TOKEN,
        SHOPBOT_SECRET_KEY=SECRET_KEY,
        SHOPBOT_STALL_AFTER_S="3",
        SHOPBOT_SWEEP_INTERVAL_S="0.5",
        SHOPBOT_HANDOFF_BUSY_AFTER_S=str(BUSY_AFTER_S),
        SHOPBOT_LOG_FORMAT="json",
        HF_HUB_OFFLINE="1",
    )
    if policies:
        env["SHOPBOT_POLICIES_FILE"] = str(policies)
    env.update(extra)
    return env


def worker(env: dict[str, str], log: Path, role: str = "all", name: str | None = None) -> Process:
    """A Celery worker started as the product starts it (``python -m workers ROLE``), serving its
    /metrics on a port of its own (``Process.metrics_url``) unless ``env`` names one."""
    args = [sys.executable, "-m", "workers", role, "-n", f"{name or role}@%h"]
    env = {"SHOPBOT_METRICS_PORT": str(free_port()), **env}
    p = Process(f"worker {name or role}", args, env, log)
    if env["SHOPBOT_METRICS_PORT"] != "0":
        p.metrics_url = f"http://127.0.0.1:{env['SHOPBOT_METRICS_PORT']}/metrics"
    return p.start()


def gateway(env: dict[str, str], log: Path) -> tuple[Process, str]:
    port = free_port()
    p = Process("gateway", [sys.executable, "-m", "gateway", "--port", str(port)], env, log).start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: urllib.request.urlopen(url + "/healthz", timeout=1).status == 200, 30, "gateway", p.proc, log)
    return p, url


def wait_ready(url: str, timeout: float = 120, proc: Process | None = None) -> None:
    def ready() -> bool:
        try:
            return urllib.request.urlopen(url + "/readyz", timeout=2).status == 200
        except urllib.error.HTTPError:
            return False

    wait_for(ready, timeout, "a worker (GET /readyz)", proc.proc if proc else None, proc.log if proc else None)


def admin_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m admin ...`` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "admin", *args], cwd=ROOT, env=env, input=stdin,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def lone_gateway(tmp: Path, redis_url: str, db: int, platforms: dict, token_name: str, **settings: str) -> dict:
    """A gateway without workers on its own Redis database (emptied) and SQLite file, pointed at the local
    platforms, with an admin token made by the CLI; stop it with ``handle["proc"].stop()``. ``settings``
    are more environment variables (they override the platforms')."""
    env = product_env(
        redis_url.rsplit("/", 1)[0] + f"/{db}", tmp / "no-models", tmp, **{**platform_env(platforms), **settings}
    )
    import redis

    redis.Redis.from_url(env["SHOPBOT_REDIS_URL"]).flushdb()
    made = admin_cli(env, "tokens", "create", "--name", token_name, "--role", "admin")
    assert made.returncode == 0, made.stderr
    proc, url = gateway(env, tmp / "gateway.log")
    return {"url": url, "env": env, "tmp": tmp, "admin": made.stdout.strip().splitlines()[-1], "proc": proc,
            "log": tmp / "gateway.log"}  # fmt: skip
