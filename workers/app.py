"""The Celery app: Redis broker, queues ``nlu`` (batched) and ``dialogue``.

Start a worker with::

    celery -A workers.app worker -Q nlu,dialogue --pool threads -c 4

Threads share one copy of the models in the process; torch runs outside the GIL.
The gateway builds its own sending client with :func:`make_app` (same routes and
serializer); it never imports the tasks, so it never loads torch.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from shopbot.settings import Settings, get_settings

ANNOTATE = "workers.tasks.annotate"
DIALOGUE_STEP = "workers.tasks.dialogue_step"


def make_app(settings: Settings) -> Celery:
    celery = Celery("shopbot", broker=settings.redis_url, include=["workers.tasks"])
    celery.conf.update(
        task_queues=(Queue("nlu"), Queue("dialogue")),
        task_default_queue="dialogue",
        task_routes={ANNOTATE: {"queue": "nlu"}, DIALOGUE_STEP: {"queue": "dialogue"}},
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
