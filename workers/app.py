"""The Celery app: Redis broker, queues ``nlu`` (batched) and ``dialogue``.

Start workers with ``python -m workers nlu`` and ``python -m workers dialogue``
(see workers/__main__.py). Threads share one copy of the models in the process.
The gateway builds its own sending client with :func:`make_app` (same routes and
serializer); it never imports the tasks, so it never loads torch.
"""

from __future__ import annotations

import os

import redis
from celery import Celery
from kombu import Queue
from kombu.transport import redis as kombu_redis

from shopbot.settings import Settings, get_settings

# Before torch is loaded: OpenMP threads that finish early sleep instead of
# spinning. On a machine whose cores the gateway, Redis and the dialogue also
# need, spinning threads cost more than they save (bench/bench_pipeline.py:
# p50 at 50 msg/s 0.5-0.8 s passive against 4-7 s active).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ANNOTATE = "workers.tasks.annotate"
DIALOGUE_STEP = "workers.tasks.dialogue_step"
SYNC_CONVERSATION = "workers.tasks.sync_conversation"
SLACK_CALL = "workers.tasks.slack_call"
GROUP_UNANSWERED = "workers.tasks.group_unanswered"


def sending_over(pool: redis.ConnectionPool) -> type[kombu_redis.Transport]:
    """A kombu Redis transport whose channels send over ``pool`` (a process's own Redis pool) instead of
    opening two connections each: a gateway only sends tasks, so its producer needs no connection of its
    own. Only for sending: a consumer needs kombu's own asynchronous connections."""

    class SharedPoolChannel(kombu_redis.Channel):
        def _get_pool(self, asynchronous: bool = False) -> redis.ConnectionPool:
            db = pool.connection_kwargs.get("db", 0)
            self.keyprefix_fanout = self.keyprefix_fanout.format(db=db)
            return pool

        def _disconnect_pools(self) -> None:
            self._pool = self._async_pool = None  # the pool is its owner's to close, not a channel's

    class Transport(kombu_redis.Transport):
        Channel = SharedPoolChannel

    return Transport


def make_app(settings: Settings, send_over: redis.ConnectionPool | None = None) -> Celery:
    """The Celery app. ``send_over``: send tasks over this Redis pool, opening no broker connection of
    its own (a gateway, which only sends; see :func:`sending_over`)."""
    celery = Celery("shopbot", broker=settings.redis_url, include=["workers.tasks"])
    if send_over is not None:
        celery.conf.broker_transport = sending_over(send_over)
    celery.conf.update(
        # "outbound": calls to Telegram and Slack, which may wait out a rate limit,
        # kept off the queue that runs dialogue steps.
        task_queues=(Queue("nlu"), Queue("dialogue"), Queue("outbound")),
        task_default_queue="dialogue",
        task_routes={
            ANNOTATE: {"queue": "nlu"},
            DIALOGUE_STEP: {"queue": "dialogue"},
            SYNC_CONVERSATION: {"queue": "outbound"},
            SLACK_CALL: {"queue": "outbound"},
            GROUP_UNANSWERED: {"queue": "nlu"},  # the retrieval encoder is there
        },
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # Late acks: a task's message leaves the broker only when the task has run.
        # Every task is idempotent (see workers/dialogue_runner.py).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # celery-batches needs the worker to prefetch more than one batch.
        worker_prefetch_multiplier=0,
        broker_transport_options={"visibility_timeout": 600},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return celery


app = make_app(get_settings())
