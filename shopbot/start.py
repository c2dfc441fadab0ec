"""Start the whole product on one machine: ``python -m shopbot.start`` (what ``scripts/start.sh`` runs).

1. Redis: ``SHOPBOT_REDIS_URL`` when set; otherwise a local ``redis-server``
   with AOF persistence under ``var/redis`` and a password made once. Everything
   under ``var/`` is readable by this user only (0700 folders, 0600 files).
2. The default NLU models, trained if missing (progress shown); the database
   migrated, and the demo shop data (orders, products, FAQ) loaded if it is empty.
3. Two Celery workers (``python -m workers nlu`` and ``dialogue``) and the
   gateway; waits until ``/readyz`` says both are up, prints the web chat's
   URL, and stops everything on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy.engine import make_url

from .settings import PACKAGE_ROOT, get_settings

VAR = PACKAGE_ROOT / "var"
LOCAL_REDIS_PORT = 6390


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _say(msg: str) -> None:
    print(f"[shopbot] {msg}", flush=True)


def spawn(args: list[str], name: str, env: dict[str, str] | None = None, var: Path = VAR) -> subprocess.Popen:
    """Start a process from the project root, its output appended to ``var/<name>.log``."""
    log = (var / f"{name}.log").open("ab")
    return subprocess.Popen(args, cwd=PACKAGE_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def private_dir(path: Path) -> Path:
    """``path`` made, or tightened, to 0700 and everything in it to 0600 (0700 for folders): the
    logs, the SQLite database, the credentials key, Redis's AOF and password are ours alone."""
    path.mkdir(parents=True, exist_ok=True)
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o700 if p.is_dir() else 0o600)
    return path


def _secret_file(path: Path, make) -> str:
    """The secret in ``path``, written once (0600, never overwritten) by ``make()``."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make() + "\n")
    return path.read_text().strip()


def start_local_redis(procs: list[subprocess.Popen], var: Path = VAR) -> str:
    """A local ``redis-server`` on 127.0.0.1 with AOF under ``var/redis`` and a password made once
    (``var/redis.password``); the password is in its config file (0600), not on its command line,
    where any user could read it. Returns the URL, password included."""
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed: install Redis (apt-get install redis-server) or set SHOPBOT_REDIS_URL")
    port = LOCAL_REDIS_PORT
    while _port_open(port):
        port += 1
    data = private_dir(var / "redis")
    password = _secret_file(var / "redis.password", lambda: secrets.token_urlsafe(24))
    conf = data / "redis.conf"
    conf.write_text(
        f'port {port}\nbind 127.0.0.1\ndir {data}\nappendonly yes\nappendfsync everysec\nsave ""\n'
        f"requirepass {password}\n"
    )
    conf.chmod(0o600)
    procs.append(spawn(["redis-server", str(conf)], "redis", var=var))
    deadline = time.monotonic() + 15
    while not _port_open(port):
        if time.monotonic() > deadline or procs[-1].poll() is not None:
            sys.exit(f"redis-server did not start; see {var / 'redis.log'}")
        time.sleep(0.1)
    _say(f"Redis on 127.0.0.1:{port}, with a password (AOF in {data})")
    return f"redis://:{password}@127.0.0.1:{port}/0"


def wait_ready(url: str, procs: list[subprocess.Popen], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                sys.exit(f"{' '.join(p.args[:4])} exited with {p.returncode}; see the logs in {VAR}")
        try:
            if urllib.request.urlopen(url + "readyz", timeout=2).status == 200:
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    sys.exit(f"not ready after {timeout:.0f}s; see the logs in {VAR}")


def load_demo_data(database_url: str) -> list[str]:
    """Migrate the database; fill an empty shop (no orders, products or FAQ) with the demo data."""
    from sqlalchemy import func, select

    from dialogue import importer, shop_data
    from shopbot.db import engine_for

    engine = engine_for(database_url)
    with engine.connect() as conn:
        if any(
            conn.execute(select(func.count()).select_from(t)).scalar()
            for t in (shop_data.orders, shop_data.products, shop_data.faq)
        ):
            return []
    demo = PACKAGE_ROOT / "dialogue" / "demo"
    done = []
    for kind, name in (("orders", "orders.json"), ("products", "products.csv"), ("faq", "faq.csv")):
        report = importer.import_file(engine, kind, demo / name)
        done.append(f"{report.imported} {kind}")
    return done


def ensure_secret_key(path: Path) -> Path:
    """A first start: the key that encrypts stored channel credentials, made once, readable by us only."""
    from admin.crypto import generate_key

    if not path.exists():
        _secret_file(path, generate_key)
        _say(f"made {path}: the key for stored credentials (keep it, and back it up with the database)")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shopbot.start", description=__doc__.split("\n")[0])
    ap.add_argument("--no-train", action="store_true", help="do not train missing models (fail instead)")
    ap.add_argument("--no-demo", action="store_true", help="do not load the demo shop data into an empty database")
    args = ap.parse_args(argv)
    # What this command and the processes it starts write (logs, the SQLite database, Redis's
    # files) is readable by this user only; files left by an earlier start are tightened too.
    os.umask(0o077)
    private_dir(VAR)
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    procs: list[subprocess.Popen] = []

    def stop(*_a) -> None:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    if "SHOPBOT_REDIS_URL" not in env:
        env["SHOPBOT_REDIS_URL"] = start_local_redis(procs)
    settings = get_settings().model_copy(update={"redis_url": env["SHOPBOT_REDIS_URL"]})
    models = settings.models_dir
    env["SHOPBOT_MODELS_DIR"] = str(models)

    from nlu.versions import FLAT, current

    serving = current(models)  # the flat models/intent and models/sentiment unless a version was promoted
    if serving.missing() and serving.name != FLAT:
        sys.exit(
            f"{models / 'current'} names version {serving.name}, which has no {' and no '.join(serving.missing())}"
            " model: python -m nlu.promote --rollback, or promote another version"
        )
    if serving.missing():
        if args.no_train:
            sys.exit(f"no models in {models}: run python -m nlu.build_default")
        _say(f"training the default models into {models} (15-20 minutes on 2 CPU cores; once only)")
        subprocess.run([sys.executable, "-m", "nlu.build_default", "--models-dir", str(models)], env=env, check=True)

    if not (env.get("SHOPBOT_SECRET_KEY") or env.get("SHOPBOT_SECRET_KEY_FILE")):
        env["SHOPBOT_SECRET_KEY_FILE"] = str(ensure_secret_key(VAR / "secret.key"))
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    _say(f"database: {shown} (migrating to the latest schema)")
    loaded = load_demo_data(settings.database_url) if not args.no_demo else []
    if loaded:
        _say("demo shop data loaded: " + ", ".join(loaded))
    gateway = [sys.executable, "-m", "gateway", "--host", settings.host, "--port", str(settings.port)]
    for i, role in enumerate(("nlu", "dialogue")):
        # SHOPBOT_METRICS_PORT=N: the NLU worker's /metrics on N, the dialogue worker's on N+1 (docs/metrics.md)
        port = {"SHOPBOT_METRICS_PORT": str(settings.metrics_port + i)} if settings.metrics_port else {}
        procs.append(spawn([sys.executable, "-m", "workers", role], f"worker-{role}", {**env, **port}))
    procs.append(spawn(gateway, "gateway", env))
    _say(f"workers (nlu, dialogue) and gateway starting (logs in {VAR}); loading the models...")
    wait_ready(f"http://127.0.0.1:{settings.port}/", procs)
    print(f"\n  Web chat: {settings.web_url}",
          f"  Admin: {settings.web_url}admin (a token: python -m admin tokens create --name you --role admin)",
          "  Ctrl-C stops everything.\n", sep="\n", flush=True)  # fmt: skip
    while True:
        for p in procs:
            if p.poll() is not None:
                _say(f"{' '.join(map(str, p.args[:4]))} exited with {p.returncode}; stopping")
                stop()
        time.sleep(1)


if __name__ == "__main__":
    raise SystemExit(main())
