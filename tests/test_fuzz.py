"""Fuzzing: schemathesis generates requests from the OpenAPI description the gateway serves
(``/openapi.json``), valid and invalid, for every operation; none may get a 5xx.

A gateway of its own (own Redis database, own SQLite file), since the fuzzer
may set channel credentials; limits are raised so the requests reach the
handlers rather than the 429 in front of them. Authorized with an admin token,
so the handlers behind the role checks are fuzzed too.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from services import lone_gateway

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzz_gw(tmp_path_factory, redis_server, platforms):
    handle = lone_gateway(
        tmp_path_factory.mktemp("fuzz"), redis_server.url, 5, platforms, "fuzzer",
        SHOPBOT_RATE_SESSION_PER_MIN="100000", SHOPBOT_RATE_IP_PER_MIN="100000",
    )  # fmt: skip
    yield handle
    handle["proc"].stop()


def test_no_request_gets_a_5xx(fuzz_gw):
    """Every operation, with valid and with invalid data (schemathesis' two generation modes)."""
    api = schemathesis.openapi.from_url(fuzz_gw["url"] + "/openapi.json")
    auth = {"Authorization": f"Bearer {fuzz_gw['admin']}"}
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 25
    calls = 0

    def fuzz(op, mode):
        @given(case=op.as_strategy(mode))
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case):
            nonlocal calls
            calls += 1
            response = case.call(base_url=fuzz_gw["url"], headers=auth, timeout=15)
            where = f"{case.method} {case.formatted_path} ({mode.value})"
            declared = str(response.status_code) in op.definition.raw.get("responses", {})  # /readyz's 503
            assert response.status_code < 500 or declared, f"{where}: {response.status_code} {response.text[:300]}"

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing in this operation can be made invalid

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(op, mode)
            assert fuzz_gw["proc"].proc.poll() is None, "the gateway died"
    assert calls > 500


def test_every_route_is_described():
    from gateway.app import create_app
    from gateway.openapi import describe
    from shopbot.settings import Settings

    described = {(m.upper(), p) for p, ops in describe()["paths"].items() for m in ops}
    undocumented = {"/", "/admin", "/openapi.json", "/web/ws", "/static/"}
    routes = set()
    for route in create_app(Settings()).router.routes():
        path = route.resource.canonical if route.resource else ""
        if route.method in ("HEAD", "OPTIONS") or path in undocumented or path.startswith("/static"):
            continue
        routes.add((route.method, path))
    assert routes - described == set()
