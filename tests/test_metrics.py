"""Metrics for operators (docs/metrics.md): what the gateway and the workers count, who may read it, and the
Prometheus and Grafana files beside docker-compose.yml, which must name only what the product exports."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from services import AGENT_TOKEN, free_port

from shopbot import metrics
from shopbot.store import ConversationStore

ROOT = Path(__file__).resolve().parent.parent
Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there are none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain; version=")
        return parse(await r.text())


async def scrape_until(http: aiohttp.ClientSession, urls: list[str], check, timeout: float = 15) -> Samples:
    """The workers' samples summed over ``urls``, once ``check`` holds for them (a scrape may come a moment
    before the worker has counted what it committed)."""
    deadline = time.monotonic() + timeout
    while True:
        total: Samples = {}
        for url in urls:
            for k, v in (await scrape(http, url)).items():
                total[k] = total.get(k, 0) + v
        if check(total) or time.monotonic() > deadline:
            return total
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_the_gateway_and_the_workers_count_a_conversation(product):
    """A web shopper asks for a person and an agent resolves the conversation: the gateway's /metrics shows
    the requests by route template (never the URL with its ids), the message in, the queues read from Redis,
    the agent's resolve; the workers' own /metrics the NLU batch, the dialogue step and the hand-off."""
    url, store = product["url"], ConversationStore.from_url(product["redis_url"])
    workers = [w.metrics_url for w in product["workers"] if w.metrics_url and w.proc.poll() is None]
    assert len(workers) >= 2  # one NLU and one dialogue worker (or the ones a test before put in their place)
    auth = {"Authorization": f"Bearer {AGENT_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        gw_before = await scrape(http, f"{url}/metrics")
        workers_before = await scrape_until(http, workers, lambda _: True)
        async with http.post(f"{url}/web/sessions", json={"locale": "en"}) as r:
            cid, sid = (body := await r.json())["conversation_id"], body["session_id"]
        payload = {"session_id": sid, "text": "I want to talk to a human agent", "client_message_id": "m1"}
        async with http.post(f"{url}/web/messages", json=payload) as r:
            assert r.status == 202
        deadline = time.monotonic() + 30
        while (store.state(cid) or {}).get("status") != "queued":
            assert time.monotonic() < deadline, f"not handed off: {store.state(cid)}"
            await asyncio.sleep(0.1)
        async with http.get(f"{url}/handoff/api/conversations/{cid}", headers=auth) as r:
            assert r.status == 200
        async with http.post(f"{url}/handoff/api/conversations/{cid}/resolve", headers=auth, json={}) as r:
            assert r.status == 200, await r.text()
        gw = await scrape(http, f"{url}/metrics")

        def grew(name: str, samples: Samples, before: Samples, **labels: str) -> float:
            return value(samples, name, **labels) - value(before, name, **labels)

        requests = "shopbot_http_requests_total"
        assert grew(requests, gw, gw_before, route="/web/messages", method="POST", status="202") == 1
        assert grew(requests, gw, gw_before, route="/web/sessions", method="POST", status="201") == 1
        assert grew(requests, gw, gw_before, route="/handoff/api/conversations/{cid}", method="GET", status="200") == 1
        assert grew(requests, gw, gw_before, route="/handoff/api/conversations/{cid}/resolve", status="200") == 1
        assert not any(cid in v for (_, labels), _v in gw.items() for _k, v in labels)  # templates, not URLs
        assert grew("shopbot_http_request_duration_seconds_count", gw, gw_before, route="/web/messages") == 1
        assert grew("shopbot_messages_in_total", gw, gw_before, channel="web") == 1
        # the resolve, in the gateway: the "back to the bot" notice, and the episode's outcome
        assert grew("shopbot_messages_out_total", gw, gw_before, channel="web", sender="system") == 1
        assert grew("shopbot_conversation_outcomes_total", gw, gw_before, outcome="resolved_agent") == 1
        assert value(gw, "shopbot_redis_up") == 1
        assert {dict(ls)["queue"] for n, ls in gw if n == "shopbot_queue_length"} == {"nlu", "dialogue", "outbound"}
        for name in ("shopbot_queue_unacked", "shopbot_conversations_pending", "shopbot_handoff_queue_length"):
            assert (name, frozenset()) in gw

        def counted(w: Samples) -> bool:
            return grew("shopbot_handoffs_total", w, workers_before, reason="requested") >= 1

        w = await scrape_until(http, workers, counted)
    assert grew("shopbot_handoffs_total", w, workers_before, reason="requested") == 1
    assert grew("shopbot_nlu_batch_size_count", w, workers_before) >= 1
    assert grew("shopbot_nlu_model_seconds_count", w, workers_before, model="intent_sentiment") >= 1
    assert grew("shopbot_nlu_model_seconds_count", w, workers_before, model="retrieval") >= 1
    assert grew("shopbot_dialogue_step_seconds_count", w, workers_before) >= 1
    assert grew("shopbot_messages_out_total", w, workers_before, channel="web", sender="system") >= 1


async def test_a_metrics_token_guards_the_gateway_and_the_workers(tmp_path, redis_server):
    """With SHOPBOT_METRICS_TOKEN set, /metrics answers only to that bearer token, on the gateway and on a
    worker's own port; and a scrape with Redis gone still answers, saying so (shopbot_redis_up 0)."""
    from aiohttp.test_utils import TestClient, TestServer

    from gateway.app import create_app
    from shopbot.settings import Settings

    token = "metrics-token-for-the-test-0123456789"
    redis_url = redis_server.url[: -len("/0")] + "/13"
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    refusals = ("shopbot_http_requests_total", {"route": "/metrics", "method": "GET", "status": "401"})
    refused_before = REGISTRY.get_sample_value(*refusals) or 0  # the app runs in this process
    for url, secret in ((redis_url, token), (dead_redis, None)):
        settings = Settings(
            _env_file=None, redis_url=url, database_url=f"sqlite:///{tmp_path / 'gw.db'}", metrics_token=secret
        )
        async with TestClient(TestServer(create_app(settings))) as client:
            if secret:
                for header in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
                    r = await client.get("/metrics", headers=header)
                    assert r.status == 401, header
                r = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
            else:
                r = await client.get("/metrics")
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=")
            text = await r.text()
            assert token not in text
            samples = parse(text)
            assert value(samples, "shopbot_redis_up") == (1 if secret else 0)
            assert value(samples, refusals[0], **refusals[1]) == refused_before + 3

    port = free_port()
    server = metrics.serve(port, "127.0.0.1", token)
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert refused.value.code == 401
        asked = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(asked, timeout=5) as r:
            assert "shopbot_dialogue_step_seconds_count" in r.read().decode()
    finally:
        server.shutdown()
        server.server_close()


def exported() -> dict[str, str]:
    """Every sample name the product exports (``..._total``, ``..._bucket``...) -> its metric family."""
    names = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            for family in obj.describe():
                suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
                names.update({family.name + s: family.name for s in suffixes})
    names.update({name: name for name in metrics.QUEUE_GAUGES})
    return names


def test_compose_prometheus_and_the_dashboard_name_only_what_exists():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert services["prometheus"]["profiles"] == ["metrics"] and services["grafana"]["profiles"] == ["metrics"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            assert not source.startswith("./") or (ROOT / source).exists(), f"{name} mounts {source}, not there"

    def port_of(service: dict) -> int:
        """Where the service serves /metrics: the gateway on its --port, a worker on SHOPBOT_METRICS_PORT."""
        command = service["command"]
        if "gateway" in command:
            return int(command[command.index("--port") + 1])
        assert service["environment"]["SHOPBOT_METRICS_ADDR"] == "0.0.0.0"  # reachable from Prometheus
        return int(service["environment"]["SHOPBOT_METRICS_PORT"])

    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    scraped = set()
    for job in prometheus["scrape_configs"]:
        targets = [t.rsplit(":", 1) for c in job.get("static_configs", []) for t in c["targets"]]
        targets += [(n, c["port"]) for c in job.get("dns_sd_configs", []) for n in c["names"]]
        assert targets, job["job_name"]
        for host, port in targets:
            assert host in services, f"{job['job_name']} scrapes {host}, not a compose service"
            assert int(port) == port_of(services[host]), f"{job['job_name']}: {host} serves /metrics elsewhere"
            scraped.add(host)
        assert job["authorization"]["credentials_file"] in services["prometheus"]["entrypoint"][-1]
    product = {n for n, s in services.items() if "gateway" in s.get("command", []) or "workers" in s.get("command", [])}
    assert product <= scraped, f"not scraped: {product - scraped}"

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "shopbot-dashboard.json").read_text(encoding="utf-8"))
    provisioned = yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    uid = provisioned["datasources"][0]["uid"]
    names, used = exported(), set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == uid == panel["datasource"]["uid"]
            for name in re.findall(r"\bshopbot_[a-z0-9_]+", target["expr"]):
                assert name in names, f"panel {panel['title']!r} asks for {name}, which shopbot/metrics.py lacks"
                used.add(names[name])
    assert set(names.values()) - used == set(), "metrics without a panel"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_multiprocess_mode_adds_up_every_process(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR, what two processes counted is shown by a third's exposition."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = "from shopbot import metrics; metrics.MESSAGES_IN.labels('telegram').inc(2)"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], cwd=ROOT, env=env, check=True, timeout=60)
    show = "import sys; from shopbot import metrics; sys.stdout.write(metrics.exposition().decode())"
    out = subprocess.run([sys.executable, "-c", show], cwd=ROOT, env=env, check=True, timeout=60, capture_output=True)
    assert value(parse(out.stdout.decode()), "shopbot_messages_in_total", channel="telegram") == 4
