"""What operators watch: every metric the product exports, defined once (docs/metrics.md).

The gateway serves them at ``GET /metrics`` on its own port (gateway/metrics_routes.py); a worker
serves them on ``SHOPBOT_METRICS_PORT`` when that is set (:func:`serve`, started by workers/tasks.py).
Each process counts what it does: the gateway the HTTP requests and the messages it accepts, the NLU
worker its batches, the dialogue worker its steps, hand-offs and sends; Prometheus adds them up.

Labels stay few and bounded: a route is the aiohttp resource's template, never a URL with its ids;
channel, sender, reason, outcome, queue and model come from short fixed lists. No label or value
carries a shopper's text, an id or a secret.

Several processes behind one port (Celery's prefork pool, a gateway under a process manager): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory of their own before they start; prometheus_client
then keeps the values in files there and :func:`registry` adds up every process's. Not set, a
process shows its own values (the default registry, with the process_ and python_ metrics).
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Iterable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, generate_latest
from prometheus_client.registry import Collector

disable_created_metrics()  # no *_created series beside every counter and histogram: half the samples

CHANNELS = ("web", "telegram", "slack")
HANDOFF_REASONS = ("requested", "angry", "not_understood", "order_action", "refund_dispute", "mood")
SENDERS = ("bot", "system", "agent")
# An episode's end (dialogue.engine.close_episode), as the transcript's outcome events name it.
OUTCOMES = ("resolved_bot", "resolved_agent", "handed_off", "abandoned")

# -- the gateway ---------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "shopbot_http_requests_total",
    "HTTP requests the gateway answered, by route template, method and status (a WebSocket when it closes)",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "shopbot_http_request_duration_seconds",
    "time the gateway took to answer, by route template and method (WebSockets left out)",
    ["route", "method"],
)
MESSAGES_IN = Counter(
    "shopbot_messages_in_total",
    "shopper messages recorded and queued for the NLU, by channel (a platform's or client's retry not counted)",
    ["channel"],
)

# -- every process that writes to a conversation ----------------------------------------------

MESSAGES_OUT = Counter(
    "shopbot_messages_out_total",
    "messages for the shopper written to a conversation's log, by channel and sender (bot, system, agent)",
    ["channel", "sender"],
)
PLATFORM_SENDS = Counter(
    "shopbot_platform_sends_total",
    "messages handed to a shopper's platform (Telegram, Slack), by channel and result (sent, failed)",
    ["channel", "result"],
)

# -- the NLU worker ----------------------------------------------------------------------------

NLU_BATCH_SIZE = Histogram(
    "shopbot_nlu_batch_size",
    "messages in one model call of the NLU worker (all the waiting batches combined)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
NLU_MODEL_SECONDS = Histogram(
    "shopbot_nlu_model_seconds",
    "time of one batched model call: intent_sentiment (the NLU models), retrieval (the e5 encoder)",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# -- the dialogue worker -----------------------------------------------------------------------

DIALOGUE_STEP_SECONDS = Histogram(
    "shopbot_dialogue_step_seconds",
    "time of one committed dialogue step: reading, deciding, the optional LLM, writing",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HANDOFFS = Counter(
    "shopbot_handoffs_total",
    "conversations the dialogue put in the human queue, by reason (a re-scoring while queued not counted)",
    ["reason"],
)
CONVERSATION_OUTCOMES = Counter(
    "shopbot_conversation_outcomes_total",
    "episodes of a conversation that ended, by outcome: resolved_bot, resolved_agent, handed_off, abandoned",
    ["outcome"],
)

for _c in CHANNELS:  # every series there from the start, at 0, so that rate() sees its first increase
    MESSAGES_IN.labels(_c)
for _r in HANDOFF_REASONS:
    HANDOFFS.labels(_r)
for _o in OUTCOMES:
    CONVERSATION_OUTCOMES.labels(_o)


def _known(value: str, known: tuple[str, ...]) -> str:
    return value if value in known else "other"  # a label never grows past its list


def count_committed(cid: str, outgoing: Iterable = (), transcript: Iterable[dict] = ()) -> None:
    """What a commit wrote, once it is written (shopbot.store): the messages for the shopper, and the
    episodes' outcomes (the transcript's ``outcome:KIND`` event rows), whichever process ended them."""
    channel = _known(cid.split(":", 1)[0], CHANNELS)
    for msg in outgoing:
        MESSAGES_OUT.labels(channel, _known(msg.sender, SENDERS)).inc()
    for row in transcript:
        kind, _, value = str(row.get("action") or "").partition(":")
        if kind == "outcome" and row.get("sender") == "event":
            CONVERSATION_OUTCOMES.labels(_known(value, OUTCOMES)).inc()


# -- read when scraped (the gateway asks Redis: gateway/metrics_routes.py) ---------------------

QUEUE_GAUGES = {
    "shopbot_queue_length": "Celery messages waiting in a queue, not yet taken by a worker (all priorities)",
    "shopbot_queue_unacked": "Celery messages a worker took and has not finished (all queues)",
    "shopbot_conversations_pending": "conversations with a shopper message not handled yet",
    "shopbot_handoff_queue_length": "conversations waiting for a person (claimed ones not counted)",
    "shopbot_redis_up": "1 when this scrape could read Redis, else 0 (and no queue figures)",
}


class QueueDepths:
    """The queue figures one scrape read, as gauges. ``None``: Redis did not answer."""

    def __init__(self, queues: dict[str, int] | None = None, unacked: int = 0, pending: int = 0, handoff: int = 0):
        self.queues, self.unacked, self.pending, self.handoff = queues, unacked, pending, handoff

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("shopbot_redis_up", QUEUE_GAUGES["shopbot_redis_up"], value=int(self.queues is not None))
        if self.queues is None:
            return [up]
        length = GaugeMetricFamily("shopbot_queue_length", QUEUE_GAUGES["shopbot_queue_length"], labels=["queue"])
        for queue, n in self.queues.items():
            length.add_metric([queue], n)
        return [
            length,
            GaugeMetricFamily("shopbot_queue_unacked", QUEUE_GAUGES["shopbot_queue_unacked"], value=self.unacked),
            GaugeMetricFamily(
                "shopbot_conversations_pending", QUEUE_GAUGES["shopbot_conversations_pending"], value=self.pending
            ),
            GaugeMetricFamily(
                "shopbot_handoff_queue_length", QUEUE_GAUGES["shopbot_handoff_queue_length"], value=self.handoff
            ),
            up,
        ]


# -- exposition ----------------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def registry() -> Collector:
    """What /metrics shows: this process's metrics, or, in multiprocess mode, every process's that writes
    to ``PROMETHEUS_MULTIPROC_DIR`` (read from their files at each scrape)."""
    if multiprocess_dir() is None:
        return REGISTRY
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    return merged


class _Joined:
    def __init__(self, *parts: Collector):
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


def exposition(*extra: Collector) -> bytes:
    """The text format of :func:`registry` and of ``extra`` collectors (figures read for this scrape)."""
    return generate_latest(_Joined(registry(), *extra))  # type: ignore[arg-type]


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header is ``Bearer <token>`` (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # a scrape every few seconds is not worth a log line


def serve(port: int, addr: str = "127.0.0.1", token: str | None = None) -> WSGIServer:
    """Serve /metrics on ``addr:port`` from a daemon thread (a worker's own endpoint); with ``token``,
    only to ``Authorization: Bearer <token>``. Raises ``OSError`` when the port cannot be bound."""
    metrics_app = make_wsgi_app(registry())

    def app(environ, start_response):
        if token and not token_matches(environ.get("HTTP_AUTHORIZATION"), token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"send Authorization: Bearer <SHOPBOT_METRICS_TOKEN>\n"]
        return metrics_app(environ, start_response)

    httpd = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    return httpd
