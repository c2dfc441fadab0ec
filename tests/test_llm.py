"""The optional LLM against a local server that speaks OpenAI's chat completions protocol.

The server's model name picks its behaviour: ``grounded`` rewords the facts it
is given, ``inventive`` adds an order number and a date of its own, ``slow``
answers after the client's timeout, ``broken`` fails with a 500, ``unsure``
says it cannot answer. Only grounded answers may reach the shopper.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from aiohttp import web
from platforms import Servers
from services import free_port

from dialogue import ConversationState, load_policy
from dialogue.engine import Annotation, step
from dialogue.llm import LLM, LLMConfig, grounded

POLICY = load_policy()
KEY = "sk-test-not-a-real-key"


class FakeOpenAI:
    def __init__(self):
        self.requests: list[dict] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        return app

    async def completions(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response(
                {"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}, status=401
            )
        body = await request.json()
        self.requests.append(body)
        model, user = body["model"], body["messages"][-1]["content"]
        facts = re.findall(r"^- (.+)$", user, re.M)
        if model == "broken":
            return web.json_response({"error": {"message": "overloaded", "type": "server_error"}}, status=500)
        if model == "slow":
            await asyncio.sleep(3)
        if model == "unsure":
            content = "NO_ANSWER"
        elif model == "inventive":
            content = f"Good news! {facts[0]}. It will arrive on 2026-12-01, order 55555."
        else:
            content = "Here is what I know: " + "; ".join(facts[:2]) + "."
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        })  # fmt: skip


@pytest.fixture(scope="module")
def openai_server():
    fake, port = FakeOpenAI(), free_port()
    servers = Servers({port: fake.app()}).start()
    yield fake, f"http://127.0.0.1:{port}/v1"
    servers.stop()


def llm(url: str, model: str, key: str = KEY, timeout: float = 1.0) -> LLM:
    return LLM(LLMConfig(url, model, key, timeout))


def track(shop, text="where is order 10023", customer="5012347788"):
    a = Annotation("en", "track_order", 0.95, "neutral", 0.0)
    return step(ConversationState(), text, a, POLICY, 1.0, shop, customer)


def test_a_grounded_rewording_replaces_the_template(openai_server, demo_shop):
    fake, url = openai_server
    result = track(demo_shop)
    polished = llm(url, "grounded").polish(result.replies, "where is order 10023", "en")
    sent = fake.requests[-1]
    given = re.findall(r"^- (.+)$", sent["messages"][1]["content"], re.M)
    assert polished[0].text == "Here is what I know: " + "; ".join(given[:2]) + "."
    assert polished[0].facts == result.replies[0].facts and polished[0].text != result.replies[0].text
    assert sent["model"] == "grounded" and sent["messages"][0]["role"] == "system"
    assert "order number: 10023" in sent["messages"][1]["content"]  # the facts travel with the draft


@pytest.mark.parametrize("model", ["inventive", "slow", "broken", "unsure"])
def test_anything_but_a_grounded_answer_falls_back_to_the_template(openai_server, demo_shop, model):
    _, url = openai_server
    result = track(demo_shop)
    t0 = time.monotonic()
    polished = llm(url, model).polish(result.replies, "where is order 10023", "en")
    assert polished == result.replies
    assert time.monotonic() - t0 < 2.5  # a slow model costs the timeout (1 s here), not its own pace


def test_a_wrong_key_falls_back_and_is_not_logged(openai_server, demo_shop, caplog):
    _, url = openai_server
    result = track(demo_shop)
    with caplog.at_level("DEBUG"):
        assert llm(url, "grounded", key="sk-wrong-key").polish(result.replies, "where", "en") == result.replies
    assert "sk-wrong-key" not in caplog.text and "LLM failed" in caplog.text


def test_an_open_question_is_answered_from_the_nearest_faq_entries_only(openai_server, demo_shop):
    fake, url = openai_server
    a = Annotation("en", "review", 0.1, "neutral", 0.0)
    result = step(ConversationState(), "can I pay half now and half later?", a, POLICY, 1.0, demo_shop)
    reply = result.replies[0]
    assert reply.kind == "fallback" and reply.facts  # the closest FAQ entries, for the model to use or not
    answered = llm(url, "grounded").polish(result.replies, "can I pay half now and half later?", "en")[0]
    facts = re.findall(r"^- (.+)$", fake.requests[-1]["messages"][1]["content"], re.M)
    assert answered.text.startswith("Here is what I know") and facts[0] in answered.text
    assert answered.quick_replies == ()
    # A model that says it cannot answer leaves the bot's own "rephrase or ask a person".
    assert llm(url, "unsure").polish(result.replies, "q", "en") == result.replies


def test_the_shoppers_personal_data_never_reaches_the_model(openai_server, demo_shop):
    fake, url = openai_server
    question = "where is order 10023? call me on 139 8765 4321 or mail li.wei@example.cn"
    result = track(demo_shop, question)
    llm(url, "grounded").polish(result.replies, question, "en")
    a = Annotation("en", "review", 0.1, "neutral", 0.0)
    open_q = "can I pay half now and half later? write to li.wei@example.cn"
    result = step(ConversationState(), open_q, a, POLICY, 1.0, demo_shop)
    llm(url, "grounded").polish(result.replies, open_q, "en")
    for sent in (json.dumps(r) for r in fake.requests[-2:]):
        assert "8765 4321" not in sent and "li.wei" not in sent and "[email]" in sent, sent
    assert len(fake.requests) >= 2 and "[phone]" in json.dumps(fake.requests[-2])
    assert "order number: 10023" in json.dumps(fake.requests[-2])  # the shop's facts still travel


def test_grounding_check():
    facts = ["order number: 10023", "expected delivery: 2026-11-25", "total: 45.50 USD"]
    assert grounded("Order 10023 should arrive on 2026-11-25; you paid 45.50 USD.", facts)
    assert not grounded("Order 10023 should arrive on 2026-11-27.", facts)
    assert not grounded("Your order 10024 has shipped.", facts)
    assert grounded("It is on its way!", facts)


def test_without_settings_there_is_no_llm():
    from shopbot.settings import Settings

    assert LLMConfig.from_settings(Settings(_env_file=None)) is None
    s = Settings(_env_file=None, llm_base_url="http://x/v1", llm_model="m", llm_api_key="k")
    assert LLMConfig.from_settings(s) == LLMConfig("http://x/v1", "m", "k", 8.0)
