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


# -- the request bodies: one declaration (gateway.schemas) for the routes and the description -----------

# A body each model takes, and what its route's path parameters are in these tests.
VALID_BODIES = {
    "NewWebSession": {"locale": "en"},
    "WebMessage": {"session_id": "abcdefgh12", "text": "hi"},
    "AgentAction": {},
    "AgentReply": {"text": "hi"},
    "Correction": {"intent": "complaint"},
    "ChannelFields": {"api_base_url": "http://127.0.0.1:1"},
    "NewToken": {"name": "someone", "role": "viewer"},
    "ForgetShopper": {"conversation_id": "web:default:nobody"},
    "NewFaqEntry": {"question_en": "Is it?", "answer_en": "It is."},
}
PATH_PARAMS = {"cid": "web:default:nobody", "mid": "1-0", "platform": "telegram", "name": "schema-test"}


def test_request_bodies_are_the_models_the_routes_validate_with():
    """Every JSON body described is a model's schema, as pydantic emits it (so the two cannot drift);
    the platforms' webhooks (``/channels/...``) are theirs to describe."""
    from gateway.openapi import REF, describe
    from gateway.schemas import BODIES

    doc = describe()
    assert doc["openapi"].startswith("3.1")  # JSON Schema 2020-12, what pydantic emits
    described = {
        (method, path): op["requestBody"]["content"]["application/json"]["schema"]
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if "application/json" in op.get("requestBody", {}).get("content", {}) and not path.startswith("/channels/")
    }
    assert set(described) == set(BODIES)
    for where, model in BODIES.items():
        schema = model.model_json_schema(ref_template=REF)
        defs = schema.pop("$defs", {})
        assert described[where] == schema, where
        assert all(doc["components"]["schemas"][name] == d for name, d in defs.items())
        assert set(VALID_BODIES[model.__name__]) <= set(schema["properties"])
        model.model_validate(VALID_BODIES[model.__name__])


def test_a_body_against_its_schema_is_refused_with_the_field_named(fuzz_gw):
    """For every field of every body: a number where the schema says otherwise is a 400 naming the field."""
    import jsonschema_rs
    import requests

    served = requests.get(fuzz_gw["url"] + "/openapi.json", timeout=10).json()
    auth = {"Authorization": f"Bearer {fuzz_gw['admin']}"}
    from gateway.schemas import BODIES

    for (method, path), model in BODIES.items():
        schema = served["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        valid = VALID_BODIES[model.__name__]
        assert jsonschema_rs.validator_for(schema).is_valid(valid), (path, valid)
        url = fuzz_gw["url"] + path.format(**PATH_PARAMS)
        for field in schema["properties"]:
            body = {**valid, field: 7}  # no field of any body is a number
            assert not jsonschema_rs.validator_for(schema).is_valid(body), (path, field)
            r = requests.request(method, url, json=body, headers=auth, timeout=15)
            assert r.status_code == 400 and field in r.json()["error"], (method, path, field, r.text[:300])
        r = requests.request(method, url, json=[valid], headers=auth, timeout=15)
        assert r.status_code == 400 and "JSON object" in r.json()["error"], (method, path, r.text[:300])
