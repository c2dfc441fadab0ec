"""The pipeline end to end: gateway, Celery worker, Redis, real (small) models, over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import aiohttp
import pytest
import redis
from services import AGENT_TOKEN, gateway, wait_ready, worker

from dialogue import load_policy
from shopbot.store import ConversationStore

pytestmark = pytest.mark.slow
POLICY = load_policy()


class Chat:
    """A shopper: a web session with its socket."""

    def __init__(self, http: aiohttp.ClientSession, url: str):
        self.http, self.url = http, url
        self.sid = self.cid = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.frames: asyncio.Queue[dict] = asyncio.Queue()
        self._reader: asyncio.Task | None = None

    async def open(self, locale: str = "en") -> Chat:
        async with self.http.post(f"{self.url}/web/sessions", json={"locale": locale}) as r:
            assert r.status == 201, await r.text()
            body = await r.json()
        self.sid, self.cid = body["session_id"], body["conversation_id"]
        self.ws = await self.http.ws_connect(f"{self.url}/web/ws?session_id={self.sid}")
        # Read all the time, as a browser does: that also answers the server's pings.
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                await self.frames.put(json.loads(frame.data))

    async def frame(self, timeout: float = 10) -> dict:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def close(self) -> None:
        await self.ws.close()
        if self._reader:
            await self._reader

    async def say(self, text: str, cmid: str | None = None) -> dict:
        payload = {"session_id": self.sid, "text": text, "client_message_id": cmid or uuid.uuid4().hex}
        async with self.http.post(f"{self.url}/web/messages", json=payload) as r:
            assert r.status == 202, await r.text()
            return await r.json()

    async def next_message(self, timeout: float = 30) -> dict:
        """The next bot/agent/system message pushed on the socket (typing events skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.frame(max(0.1, deadline - time.monotonic()))
            if frame["type"] == "message":
                return frame

    async def history(self, after: str | None = None) -> list[dict]:
        q = f"{self.url}/web/messages?session_id={self.sid}" + (f"&after={after}" if after else "")
        async with self.http.get(q) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["messages"]


async def agent(
    http: aiohttp.ClientSession, url: str, method: str, path: str, token: str = AGENT_TOKEN, **body
) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(
        method, f"{url}/handoff/api{path}", json=body if method == "POST" else None, headers=headers
    ) as r:
        return r.status, await r.json()


def agent_token(product, name: str) -> str:
    """A token of the agent ``name``, made as an admin makes one (the agent is the token's own name)."""
    from admin.access import TokenStore
    from shopbot import db

    return TokenStore(db.engine_for(product["env"]["SHOPBOT_DATABASE_URL"])).create(name, "agent", "tests")[1]


HELPED = POLICY.message("did_that_help", "en")


def _transcript(product, cid: str, sender: str, count: int, timeout: float = 30.0) -> list:
    """The conversation's SQL transcript rows from ``sender``, once the flusher has moved ``count`` there."""
    from sqlalchemy import select

    from shopbot import db
    from shopbot.transcripts import messages

    engine, deadline = db.engine_for(product["env"]["SHOPBOT_DATABASE_URL"]), time.monotonic() + timeout
    q = select(messages).where(messages.c.conversation_id == cid, messages.c.sender == sender).order_by(messages.c.ts)
    while True:
        with engine.connect() as conn:
            rows = conn.execute(q).all()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def _events(product, cid: str, count: int) -> list[tuple[str, str, str | None]]:
    return [(r.action, r.detail, r.agent) for r in _transcript(product, cid, "event", count)]


def _shopper_actions(product, cid: str, count: int) -> list[str]:
    return [r.action for r in _transcript(product, cid, "shopper", count)]


def wait_handled(redis_url: str, cid: str, timeout: float = 30) -> None:
    """Until the dialogue has handled every message of the conversation (its inbox is empty)."""
    store = ConversationStore.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while store.inbox(cid):
        assert time.monotonic() < deadline, f"inbox of {cid} not empty after {timeout}s"
        time.sleep(0.1)


async def test_conversation_end_to_end(product):
    url = product["url"]
    async with aiohttp.ClientSession() as http:
        chat = await Chat(http, url).open()

        await chat.say("where is my order")
        asked = await chat.next_message()
        assert asked["from"] == "bot"
        assert asked["text"] == POLICY.message("ask_order_number", "en")

        await chat.say("it is 10023")
        answer = await chat.next_message()
        assert answer["from"] == "bot" and "10023" in answer["text"]

        await chat.say("I want to talk to a human agent")
        notice = await chat.next_message()
        assert notice["from"] == "system" and notice["text"] == POLICY.message("handoff", "en")

        status, queue = await agent(http, url, "GET", "/queue")
        assert status == 200
        item = next(i for i in queue["waiting"] if i["conversation_id"] == chat.cid)
        assert item["reason"] == "requested" and item["channel"] == "web"
        # The session id is the shopper's secret: agents see a conversation id that does not reveal it.
        assert chat.sid not in chat.cid and chat.sid not in json.dumps(queue)
        assert any(m["text"] == "I want to talk to a human agent" for m in item["last_messages"])

        alice, bob = agent_token(product, "alice"), agent_token(product, "bob")
        # Nobody acts in another agent's name: the agent is the token's.
        status, body = await agent(http, url, "POST", f"/conversations/{chat.cid}/claim", bob, agent="alice")
        assert status == 403 and "token's own name" in body["error"]
        status, _ = await agent(http, url, "POST", f"/conversations/{chat.cid}/claim", alice)
        assert status == 200
        assert (await chat.next_message())["text"] == POLICY.message("agent_joined", "en")
        status, body = await agent(http, url, "POST", f"/conversations/{chat.cid}/claim", bob)
        assert status == 409 and "alice" in body["error"]
        status, body = await agent(http, url, "POST", f"/conversations/{chat.cid}/reply", bob, text="it's bob")
        assert status in (403, 409), body

        status, _ = await agent(
            http, url, "POST", f"/conversations/{chat.cid}/reply", alice, agent="alice", text="Hi, Alice here!"
        )
        assert status == 200
        from_agent = await chat.next_message()
        assert from_agent["from"] == "agent" and from_agent["text"] == "Hi, Alice here!"

        # While the agent owns the conversation the bot says nothing.
        sent = await chat.say("where is my order")
        await asyncio.to_thread(wait_handled, product["redis_url"], chat.cid)
        after = await chat.history(after=sent["message_id"])
        assert after == [], f"the bot spoke while an agent owned the conversation: {after}"

        status, _ = await agent(http, url, "POST", f"/conversations/{chat.cid}/resolve", alice)
        assert status == 200
        back = await chat.next_message()
        assert back["text"].startswith(POLICY.message("back_to_bot", "en"))
        assert back["quick_replies"] == list(POLICY.quick_replies("en", "csat_quick_replies"))
        await chat.say("5")  # the rating, by its button
        assert (await chat.next_message())["text"] == POLICY.message("csat_thanks", "en")

        # Back with the bot, which still remembers the order number.
        await chat.say("where is my order")
        again = await chat.next_message()
        assert again["from"] == "bot" and "10023" in again["text"]

        # The whole conversation over HTTP, the shopper's messages included, in order.
        history = await chat.history()
        assert [m["from"] for m in history].count("shopper") == 6
        assert [m["id"] for m in history] == sorted(m["id"] for m in history)
        await chat.close()
    # The transcript in SQL says how the episode ended, and what the shopper thought of it.
    events = await asyncio.to_thread(_events, product, chat.cid, 2)
    assert ("outcome:resolved_agent", "requested", "alice") in events and ("csat:5", "", None) in events
    actions = await asyncio.to_thread(_shopper_actions, product, chat.cid, 6)
    assert actions[:3] == ["ask:order_number", "order:track_order", "handoff:requested"] and actions[4] == "csat"
    # ... nor do the logs, where every line names its conversation.
    logs = [product["tmp"] / n for n in ("gateway.log", "worker-nlu.log", "worker-dialogue.log")]
    assert chat.cid in logs[0].read_text() and not [p.name for p in logs if chat.sid in p.read_text()]


async def test_did_that_help_yes_ends_the_episode_as_resolved_by_the_bot(product):
    async with aiohttp.ClientSession() as http:
        chat = await Chat(http, product["url"]).open()
        await chat.say("Which payment methods do you accept?")
        answer = await chat.next_message()
        assert "Apple Pay" in answer["text"]  # the shop's FAQ entry
        helped = await chat.next_message()
        assert helped["text"] == HELPED
        assert helped["quick_replies"] == list(POLICY.quick_replies("en", "helped_quick_replies"))
        await chat.say(helped["quick_replies"][0])  # "Yes, thanks", pressed
        assert (await chat.next_message())["text"] == POLICY.message("helped_yes", "en")
        await chat.close()
    events = await asyncio.to_thread(_events, product, chat.cid, 2)
    assert events == [("helped:yes", "faq:payment-methods", None), ("outcome:resolved_bot", "confirmed", None)]


async def test_same_client_message_id_three_times_gives_one_reply(product):
    async with aiohttp.ClientSession() as http:
        chat = await Chat(http, product["url"]).open()
        first = await chat.say("where is my order", cmid="retry-1")
        again = [await chat.say("where is my order", cmid="retry-1") for _ in range(2)]
        assert all(a["message_id"] == first["message_id"] and a["duplicate"] for a in again)
        await chat.next_message()
        await asyncio.to_thread(wait_handled, product["redis_url"], chat.cid)
        history = await chat.history()
        assert [m["from"] for m in history] == ["shopper", "bot"]


async def test_twenty_concurrent_messages_are_answered_in_order(product):
    async with aiohttp.ClientSession() as http:
        chat = await Chat(http, product["url"]).open()
        # Each message names its own order number, and so does its reply: the
        # replies must come out in the order the messages arrived (their log order).
        texts = [f"where is my order {10000 + i}" for i in range(20)]
        sent = await asyncio.gather(*(chat.say(t, cmid=f"m{i}") for i, t in enumerate(texts)))
        assert len({s["message_id"] for s in sent}) == 20
        await asyncio.to_thread(wait_handled, product["redis_url"], chat.cid, 120)
        history = await chat.history()
        arrived = [m["text"].split()[-1] for m in history if m["from"] == "shopper"]
        replies = [m["text"] for m in history if m["from"] == "bot"]
        assert sorted(arrived) == sorted(str(10000 + i) for i in range(20))
        assert len(replies) == 20
        answered = [next(n for n in arrived if n in r) for r in replies]
        assert answered == arrived


async def test_two_gateways_and_two_dialogue_workers_answer_each_message_once_and_in_order(product):
    """Scale-out on one Redis: a second gateway and a second dialogue worker beside the first ones. Each
    shopper writes through one gateway and reads their socket on the other; every message is answered
    exactly once and in the order it arrived, whichever worker took which step, and each socket gets every
    reply once, in order."""
    env, tmp, redis_url = product["env"], product["tmp"], product["redis_url"]
    g2, url2 = gateway(env, tmp / "gateway-2.log")
    w2 = worker(env, tmp / "worker-dialogue-2.log", "dialogue", name="dialogue2")
    try:
        store = ConversationStore.from_url(redis_url)
        deadline = time.monotonic() + 120
        while not any(n.startswith("dialogue2@") for n in store.live_workers()):
            assert time.monotonic() < deadline, "the second dialogue worker never sent a heartbeat"
            await asyncio.sleep(0.5)
        urls = [product["url"], url2]
        async with aiohttp.ClientSession() as http:
            chats = [await Chat(http, urls[i % 2]).open() for i in range(6)]

            async def write(i: int, chat: Chat) -> None:
                other = urls[(i + 1) % 2]  # the gateway the socket is not on
                for j in range(5):
                    body = {
                        "session_id": chat.sid,
                        "text": f"where is my order {10021 + j}",
                        "client_message_id": f"s{j}",
                    }
                    async with http.post(f"{other}/web/messages", json=body) as r:
                        assert r.status == 202, await r.text()
                # A retry of an earlier message through the first gateway is the same message.
                body = {"session_id": chat.sid, "text": "where is my order 10021", "client_message_id": "s0"}
                async with http.post(f"{urls[i % 2]}/web/messages", json=body) as r:
                    assert r.status == 202 and (await r.json())["duplicate"] is True

            await asyncio.gather(*(write(i, c) for i, c in enumerate(chats)))
            for chat in chats:
                await asyncio.to_thread(wait_handled, redis_url, chat.cid, 120)
                history = await chat.history()
                asked = [m["text"].split()[-1] for m in history if m["from"] == "shopper"]
                replies = [m for m in history if m["from"] == "bot" and m["text"] != HELPED]  # not "did that help?"
                assert asked == [str(10021 + j) for j in range(5)]
                assert [next(n for n in asked if n in r["text"]) for r in replies] == asked  # once each, in order
                pushed = []
                while len(pushed) < len(replies):
                    frame = await chat.frame(30)
                    if frame.get("type") == "message" and frame["from"] == "bot" and frame["text"] != HELPED:
                        pushed.append(frame["id"])
                assert pushed == [r["id"] for r in replies]
                await chat.close()
    finally:
        g2.stop()
        w2.stop()


async def test_a_handoff_nobody_claims_offers_to_wait_or_leave_a_message_once(product):
    from services import BUSY_AFTER_S

    url = product["url"]
    async with aiohttp.ClientSession() as http:
        chat = await Chat(http, url).open()
        await chat.say("I want to talk to a human agent")
        assert (await chat.next_message())["text"] == POLICY.message("handoff", "en")
        queued_at = time.monotonic()
        busy = await chat.next_message(timeout=BUSY_AFTER_S + 30)
        assert time.monotonic() - queued_at >= BUSY_AFTER_S - 1
        assert busy["from"] == "system" and busy["text"] == POLICY.message("agents_busy", "en")
        assert busy["quick_replies"] == ["Keep waiting", "Leave a message"]
        await chat.say("Leave a message")  # recorded for the agent, and acknowledged
        ack = await chat.next_message()
        assert ack["from"] == "system" and ack["text"] == POLICY.message("leave_message_ack", "en")
        await chat.say("it's about my order 10022, please e-mail me")  # for the agent: the bot stays silent
        with pytest.raises(asyncio.TimeoutError):
            await chat.next_message(timeout=5)
        status, _ = await agent(http, url, "POST", f"/conversations/{chat.cid}/resolve")
        assert status == 200


async def test_worker_killed_mid_task_loses_no_message(product):
    """SIGKILL the workers while messages are queued; new workers answer all of them."""
    url, env, tmp = product["url"], product["env"], product["tmp"]
    async with aiohttp.ClientSession() as http:
        chats = [await Chat(http, url).open() for _ in range(4)]
        for w in product["workers"]:
            w.kill()
        for c in chats:
            await c.say("where is my order")
        # A worker that dies right after taking the messages: started, given a moment, killed.
        w = worker(env, tmp / "worker-2.log", "all", name="w2")
        await asyncio.sleep(4)
        w.kill()
        product["workers"] = [
            worker(env, tmp / "worker-nlu-3.log", "nlu", name="nlu3"),
            worker(env, tmp / "worker-dialogue-3.log", "dialogue", name="dialogue3"),
        ]
        await asyncio.to_thread(wait_ready, url, 180, product["workers"][0])
        for c in chats:
            reply = await c.next_message(timeout=90)
            assert reply["from"] == "bot"
        for c in chats:
            await asyncio.to_thread(wait_handled, product["redis_url"], c.cid)
            assert [m["from"] for m in await c.history()] == ["shopper", "bot"]


async def test_a_dialogue_worker_killed_mid_step_holds_nobody_up(product):
    """A dialogue worker SIGKILLed in the middle of a step (it holds the conversation's lock, waiting on a
    slow LLM): the conversation is answered within 10 s of a new worker being up, not after a 30 s lock."""
    from aiohttp import web

    asked, done = asyncio.Event(), asyncio.Event()

    async def slow_llm(_request):  # an OpenAI-style endpoint that never answers in time (until the test ends)
        asked.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 120)
        return web.json_response({})

    llm = web.Application()
    llm.router.add_post("/v1/chat/completions", slow_llm)
    runner = web.AppRunner(llm)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    llm_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"
    env, tmp, redis_url = product["env"], product["tmp"], product["redis_url"]
    store = ConversationStore.from_url(redis_url)
    dialogue = [w for w in product["workers"] if "dialogue" in w.name]
    for w in dialogue:
        w.kill()
    stuck = worker(
        {**env, "SHOPBOT_LLM_BASE_URL": llm_url, "SHOPBOT_LLM_MODEL": "slow", "SHOPBOT_LLM_TIMEOUT_S": "120"},
        tmp / "worker-dialogue-stuck.log", "dialogue", name="stuck",
    )  # fmt: skip
    fresh = None
    try:
        async with aiohttp.ClientSession() as http:
            chat = await Chat(http, product["url"]).open()
            await chat.say("where is my order 10023")
            await asyncio.wait_for(asked.wait(), 180)  # the step is running, the lock held
            assert store.r.exists(f"sb:conv:{{{chat.cid}}}:lock")
            stuck.kill()
            fresh = worker(env, tmp / "worker-dialogue-fresh.log", "dialogue", name="fresh")
            product["workers"] = [w for w in product["workers"] if w not in dialogue] + [fresh]
            deadline = time.monotonic() + 180
            while not any(n.startswith("fresh@") for n in store.live_workers(within_s=2)):
                assert time.monotonic() < deadline, "the new dialogue worker never came up"
                await asyncio.sleep(0.2)
            up = time.monotonic()
            reply = await chat.next_message(timeout=60)
            answered_in = time.monotonic() - up
            assert reply["from"] == "bot" and "10023" in reply["text"]
            assert answered_in <= 10, f"answered {answered_in:.1f} s after the new worker was up"
            assert [m["from"] for m in await chat.history()] == ["shopper", "bot"]  # once
            await chat.close()
    finally:
        stuck.kill()
        if fresh is None:  # failed before the new worker started: the tests after this one need a dialogue worker
            fresh = worker(env, tmp / "worker-dialogue-fresh.log", "dialogue", name="fresh")
            product["workers"] = [w for w in product["workers"] if w not in dialogue] + [fresh]
        done.set()  # the request the killed worker left open ends now, not after the runner's shutdown timeout
        await runner.cleanup()


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ("{not json", 400, "not valid JSON"),
        ("[1, 2]", 400, "JSON object"),
        (json.dumps({"text": "hi"}), 400, "session_id"),
        (json.dumps({"session_id": "short", "text": "hi"}), 400, "session_id"),
        (json.dumps({"session_id": "abcdefgh12", "text": 42}), 400, "text must be a string"),
        (json.dumps({"session_id": "abcdefgh12", "text": "   "}), 400, "text is empty"),
        (json.dumps({"session_id": "abcdefgh12", "text": "x" * 4001}), 413, "too long"),
        (json.dumps({"session_id": "abcdefgh12", "text": "hi", "client_message_id": 7}), 400, "client_message_id"),
        (json.dumps({"session_id": "abcdefgh12", "text": "hi", "locale": "not a locale!"}), 400, "locale"),
    ],
)
async def test_bad_input_is_refused_with_a_reason_and_nothing_is_stored(product, body, status, reason):
    r = redis.Redis.from_url(product["redis_url"], decode_responses=True)
    keys_before = set(r.scan_iter("sb:conv:*abcdefgh12*"))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{product['url']}/web/messages", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == status
            assert reason in (await resp.json())["error"]
    assert set(r.scan_iter("sb:conv:*abcdefgh12*")) == keys_before


async def test_unknown_session_and_bad_queries_get_4xx(product):
    url = product["url"]
    async with aiohttp.ClientSession() as http:
        for path, status in [
            ("/web/ws?session_id=nosuchsession1", 404),
            ("/web/ws", 400),
            ("/web/messages?session_id=nosuchsession1", 404),
            ("/web/messages?session_id=bad!", 400),
        ]:
            async with http.get(url + path) as r:
                assert r.status == status, path
                assert (await r.json())["error"]
        chat = await Chat(http, url).open()
        async with http.get(f"{url}/web/messages?session_id={chat.sid}&after=yesterday") as r:
            assert r.status == 400
        await chat.ws.send_str("{oops")
        assert (await chat.frame())["type"] == "error"
        await chat.ws.send_json({"type": "message", "text": ""})
        err = await chat.frame()
        assert err["type"] == "error" and "empty" in err["reason"]
        await chat.ws.send_json({"type": "message", "text": "where is my order", "client_message_id": "ws-1"})
        ack = await chat.frame()
        while ack["type"] == "typing":  # the typing frame may come first
            ack = await chat.frame()
        assert ack["type"] == "ack" and ack["client_message_id"] == "ws-1"
        assert (await chat.next_message())["from"] == "bot"
        await chat.close()


async def test_agent_api_needs_the_token(product):
    url = product["url"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/handoff/api/queue") as r:
            assert r.status == 401
        async with http.get(f"{url}/handoff/api/queue", headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        status, body = await agent(http, url, "POST", "/conversations/web:default:nosuchsession1/claim")
        assert status == 404
        status, body = await agent(http, url, "POST", "/conversations/web:default:nosuchsession1/claim", agent="a")
        assert status == 403 and "token's own name" in body["error"]


async def test_health_and_transcripts_in_sql(product):
    import sqlalchemy

    from shopbot import transcripts

    url = product["url"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/readyz") as r:
            body = await r.json()
            assert r.status == 200 and body["redis"] and body["workers"] >= 1
        chat = await Chat(http, url).open()
        await chat.say("where is my order")
        await chat.next_message()
    engine = sqlalchemy.create_engine(product["env"]["SHOPBOT_DATABASE_URL"])
    deadline = time.monotonic() + 20
    while len(rows := transcripts.conversation(engine, chat.cid)) < 2:
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.3)
    shopper, bot = rows
    assert shopper["sender"] == "shopper" and shopper["intent"] == "track_order" and shopper["language"] == "en"
    assert bot["sender"] == "bot" and bot["text"] == POLICY.message("ask_order_number", "en")


async def test_the_nlu_pass_embeds_what_the_dialogue_searches_with_so_the_dialogue_runs_no_model(product):
    """The NLU worker's batch computes the retrieval vectors (the message; a product question's subject too;
    the questions of a message of several parts) and stores them with the annotation; the dialogue worker
    answers from them without embedding anything."""
    import numpy as np

    from dialogue.retrieval import decode, key, retrieval_texts

    store = ConversationStore.from_url(product["redis_url"])
    miss = "retrieval vector computed in the dialogue step"

    def dialogue_logs() -> str:  # earlier tests may have replaced the first dialogue worker
        return "".join(p.read_text() for p in sorted(product["tmp"].glob("worker-dialogue*.log")))

    misses_before = dialogue_logs().count(miss)
    async with aiohttp.ClientSession() as http:
        chat = await Chat(http, product["url"]).open()
        asked = {}
        several = "Quick one: how much is shipping to the UK, and do you take PayPal?"
        for text in ("How much is shipping?", "do you sell yoga mats?", several):
            asked[text] = (await chat.say(text))["message_id"]
            reply = await chat.next_message()
            while reply["text"] == HELPED:  # the question after the answer before
                reply = await chat.next_message()
            assert reply["from"] == "bot"
        await chat.close()
    for text, mid in asked.items():
        ann = store.annotation(chat.cid, mid)
        vectors = decode(ann["vectors"])
        wanted = retrieval_texts(POLICY, text, ann["language"], ann["intent"])
        assert set(vectors) == {key(t) for t in wanted}
        assert all(v.shape == (384,) and abs(float(np.linalg.norm(v)) - 1) < 1e-3 for v in vectors.values())
    assert len(decode(store.annotation(chat.cid, asked["do you sell yoga mats?"])["vectors"])) == 2
    assert len(decode(store.annotation(chat.cid, asked[several])["vectors"])) == 3  # the message and its 2 questions
    logs = dialogue_logs()
    assert chat.cid in logs and logs.count(miss) == misses_before


async def test_unanswered_questions_are_grouped_by_the_nlu_worker_and_become_an_faq_entry(product):
    """The admin page's "unanswered questions": the transcripts' unanswered messages, grouped by meaning by
    the NLU worker (it has the encoder), and an FAQ entry added from a group."""
    from sqlalchemy import insert, select

    from admin.access import TokenStore
    from dialogue.shop_data import faq
    from shopbot import db
    from shopbot.transcripts import messages

    engine = db.engine_for(product["env"]["SHOPBOT_DATABASE_URL"])
    admin = TokenStore(engine).create("analyst", "admin", "tests")[1]
    viewer = TokenStore(engine).create("onlooker", "viewer", "tests")[1]
    asked = ["do you have a mobile app?", "is there an iphone app for your shop", "can i download your app",
             "do you sell wholesale", "bulk order pricing for businesses?"]  # fmt: skip
    now = time.time()
    rows = [
        {"conversation_id": f"web:unanswered-{i}", "message_id": "m1", "channel": "web", "sender": "shopper",
         "text": t, "ts": now - 60 + i, "language": "en", "action": "not_understood"}
        for i, t in enumerate(asked)
    ]  # fmt: skip
    rows.append({**rows[0], "conversation_id": "web:answered", "text": "where is 10021", "action": "order:track_order"})
    with engine.begin() as conn:
        conn.execute(insert(messages), rows)
    url = f"{product['url']}/admin/api"
    async with aiohttp.ClientSession() as http:

        async def groups(token: str = viewer, days: str = "7") -> tuple[int, dict]:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{url}/analytics/unanswered?days={days}", headers=headers) as r:
                return r.status, await r.json()

        assert (await groups(days="0"))[0] == 400
        status, body = await groups()
        assert status == 200 and body["status"] in ("computing", "ready")
        deadline = time.monotonic() + 120
        while body["status"] != "ready" or body["days"] != 7:
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.5)
            body = (await groups())[1]
        # (Other tests' messages the bot did not understand are there too.)
        found = {t for g in body["groups"] for t in g["examples"]}
        assert set(asked) <= found and "where is 10021" not in found
        app = next(g for g in body["groups"] if "do you have a mobile app?" in g["examples"])
        assert set(asked[:3]) <= set(app["examples"]) and app["count"] == 3  # a group is one meaning

        entry = {"question_en": "Do you have an app?", "answer_en": "Not yet: the shop works in any phone's browser.",
                 "also_asked_en": app["examples"]}  # fmt: skip
        headers = {"Authorization": f"Bearer {viewer}"}
        async with http.post(f"{url}/faq", json=entry, headers=headers) as r:
            assert r.status == 403  # adding to what the bot says takes an admin
        headers = {"Authorization": f"Bearer {admin}"}
        async with http.post(f"{url}/faq", json={"question_en": "no answer"}, headers=headers) as r:
            assert r.status == 400 and "answer" in (await r.json())["error"]
        async with http.post(f"{url}/faq", json=entry, headers=headers) as r:
            assert r.status == 201, await r.text()
            added = (await r.json())["id"]
        async with http.post(f"{url}/faq", json={**entry, "id": added}, headers=headers) as r:
            assert r.status == 409
    with engine.connect() as conn:
        row = conn.execute(select(faq).where(faq.c.id == added)).one()
    assert row.question_en == "Do you have an app?" and "do you have a mobile app?" in row.also_asked_en
