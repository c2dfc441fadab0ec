"""The worker's tasks and its background duties.

- ``annotate`` (queue ``nlu``): batched across conversations by celery-batches;
  runs the NLU models once per batch, and the retrieval encoder on the texts the
  dialogue may search with (dialogue.retrieval), stores the annotations with
  those vectors, wakes the dialogue of each conversation concerned. The
  dialogue step runs no model.
- ``dialogue_step`` (queue ``dialogue``): handles a conversation's inbox in order.
- A housekeeping thread per worker: heartbeat (``/readyz``), re-queues
  conversations whose messages stalled (a gateway or worker died between two
  steps), moves transcript rows into SQL.
- A models-watch thread per NLU worker: switches to the model version that
  ``models/current`` names when ``nlu.promote`` changes it (``switch_models``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import asdict
from functools import lru_cache

from celery import signals
from celery_batches import Batches
from redis.exceptions import LockError

from channels.base import RateLimited, SendFailed
from dialogue import load_policy
from handoff.queue import HandoffQueue
from shopbot import db, metrics, transcripts
from shopbot.logs import setup_logging
from shopbot.settings import get_settings
from shopbot.store import TRANSCRIPTS, TRANSCRIPTS_LOCK, TRANSCRIPTS_LOCK_S, ConversationStore

from . import outbound
from .app import app
from .combiner import Combiner
from .dialogue_runner import close_idle, run_conversation

log = logging.getLogger(__name__)
settings = get_settings()


@lru_cache(maxsize=1)
def store() -> ConversationStore:
    return ConversationStore.from_settings(settings)


@lru_cache(maxsize=1)
def engine():
    return db.engine_for(settings.database_url)  # migrates the schema if needed


@lru_cache(maxsize=1)
def _live_channels():
    from admin.credentials import CredentialStore, LiveChannels

    return LiveChannels(CredentialStore.from_settings(settings, engine(), store().r))


def channels():
    """The channel credentials in force now (an admin's change is seen at the next call)."""
    return _live_channels().current()


@lru_cache(maxsize=1)
def policy():
    return load_policy(settings.policies_file)


_shop_lock = threading.Lock()


def shop():
    """Orders, FAQ and catalogue for the dialogue (the e5 encoder for retrieval is loaded once per process)."""
    with _shop_lock:
        return _load_shop()


_embedder_lock = threading.Lock()


@lru_cache(maxsize=1)
def _load_embedder():
    from nlu.embed import Embedder

    return Embedder.load()


def embedder():
    """The e5 retrieval encoder, one per process: the NLU pass and the shop's index share it."""
    with _embedder_lock:
        return _load_embedder()


@lru_cache(maxsize=1)
def _load_shop():
    from dialogue.shop import Shop

    t0 = time.perf_counter()
    from nlu.embed import CachedEmbedder

    # The FAQ's and catalogue's vectors are kept in Redis: a worker that starts after another (or restarts)
    # reads them back, and loads e5 only for texts nobody has embedded yet.
    s = Shop.from_settings(settings, CachedEmbedder(embedder, store().r))
    s.refresh(force=True)
    log.info(
        "shop data ready", extra={"seconds": round(time.perf_counter() - t0, 1), "order_source": settings.order_source}
    )
    _check_facts(s)
    return s


def _check_facts(s) -> None:
    """Warn about policy texts that state what the shop's data does not (python -m dialogue.facts)."""
    from dialogue.facts import check_shop

    try:
        findings = check_shop(policy(), s)
    except Exception:  # noqa: BLE001 - a check, not a reason to stop answering
        log.exception("the facts check could not run")
        return
    for f in findings:
        log.warning("policy text contradicts the shop's data", extra={"where": f.where, "problem": f.problem})


@lru_cache(maxsize=1)
def llm():
    from dialogue.llm import LLM, LLMConfig

    config = LLMConfig.from_settings(settings)
    if config is None:
        return None
    log.info("LLM configured", extra={"llm_base_url": config.base_url, "llm_model": config.model})
    return LLM(config)


_nlu_lock = threading.Lock()
_serving = None  # (version name, NLU): what annotate uses; switch_models replaces it whole
_failed: tuple[str, int] | None = None  # a version that would not load, and the mtime of current then


def _load_nlu(version):
    from nlu.inference import NLU

    t0 = time.perf_counter()
    models = NLU.load(version.intent_dir, version.sentiment_dir, device=settings.device, int8=settings.nlu_int8)
    log.info(
        "NLU models loaded",
        extra={
            "models_dir": str(version.path),
            "model_version": version.name,
            "device": str(models.device),
            "int8": models.int8,
            "shared_layers": models.shared_depth,
            "seconds": round(time.perf_counter() - t0, 1),
        },
    )
    return models


def serving():
    """The NLU models in service and their version (nlu.versions: the one ``current`` names), loaded
    once per process; threads share them."""
    global _serving
    with _nlu_lock:
        if _serving is None:
            from nlu.versions import current

            v = current(settings.models_dir)
            _serving = (v.name, _load_nlu(v))
        return _serving


def nlu():
    """The NLU models in service."""
    return serving()[1]


def switch_models(models_dir=None) -> str | None:
    """If ``current`` names another version than the one serving, load it whole and put it in service;
    returns its name. A batch already running finishes on the models it started with, the next one
    runs on the new ones: no batch mixes two versions. A version that fails to load is logged and
    skipped (the old one keeps serving) until ``current`` is written again."""
    global _serving, _failed
    from nlu.versions import CURRENT, current_name, version

    d = models_dir or settings.models_dir
    try:
        stamp = (d / CURRENT).stat().st_mtime_ns
    except FileNotFoundError:
        stamp = 0
    name = current_name(d)
    was = serving()[0]
    if name == was or _failed == (name, stamp):
        return None
    try:
        v = version(d, name)
        if v.missing():
            raise FileNotFoundError(f"{v.path} has no {' and no '.join(v.missing())} model")
        loaded = _load_nlu(v)
    except Exception as exc:  # noqa: BLE001 - a bad version must not stop the worker answering
        _failed = (name, stamp)
        log.error(
            "NLU model version %s could not be loaded; still serving %s: %s",
            name,
            was,
            exc,
            extra={"model_version": was, "refused_version": name},
        )
        return None
    with _nlu_lock:
        _serving = (name, loaded)
    _failed = None
    log.info("NLU model version switched", extra={"model_version": name, "previous_version": was})
    return name


def _watch_models(stop: threading.Event) -> None:
    """An NLU worker's thread: every SHOPBOT_MODELS_CHECK_S, switch to a newly promoted version."""
    serving()
    while not stop.wait(settings.models_check_s):
        try:
            switch_models()
        except Exception:  # noqa: BLE001 - keep watching through a bad read
            log.exception("checking the models' current version failed; retrying")


def _annotate_texts(texts: list[str]) -> list[dict]:
    """Annotations as stored: intent and sentiment, and the retrieval vectors the dialogue step will want."""
    from dialogue.retrieval import encode, key, retrieval_texts

    t0 = time.perf_counter()
    version, models = serving()  # one version for the whole batch, even if a switch comes meanwhile
    anns = models.annotate(texts)
    t1 = time.perf_counter()
    metrics.NLU_BATCH_SIZE.observe(len(texts))
    metrics.NLU_MODEL_SECONDS.labels("intent_sentiment").observe(t1 - t0)
    wanted = [retrieval_texts(policy(), t, a.language, a.intent) for t, a in zip(texts, anns, strict=True)]
    vecs = iter(embedder().embed([t for ts in wanted for t in ts]))
    out = []
    for a, ts in zip(anns, wanted, strict=True):
        d = asdict(a)
        d["model_version"] = version
        d["vectors"] = encode({key(t): next(vecs) for t in ts})
        out.append(d)
    metrics.NLU_MODEL_SECONDS.labels("retrieval").observe(time.perf_counter() - t1)
    log.info(
        "NLU batch",
        extra={
            "size": len(texts),
            "model_version": version,
            "ms": round((t1 - t0) * 1000, 1),
            "retrieval_texts": sum(map(len, wanted)),
            "retrieval_ms": round((time.perf_counter() - t1) * 1000, 1),
        },
    )
    return out


# The worker's threads run celery-batches' batches side by side; the model runs
# one call at a time over everything they hold (workers/combiner.py).
annotate_combined = Combiner(_annotate_texts, max_items=4 * settings.nlu_batch_size)


@app.task(base=Batches, flush_every=settings.nlu_batch_size, flush_interval=settings.nlu_flush_interval_s)
def annotate(requests) -> None:
    """Annotate a batch of shopper messages, given as (conversation id, message id)."""
    s = store()
    todo = s.texts_to_annotate([(req.args[0], req.args[1]) for req in requests])
    if todo:
        anns = annotate_combined([text for _, _, text in todo])
        s.save_annotations([(cid, mid, a) for (cid, mid, _), a in zip(todo, anns, strict=True)])
    for cid in dict.fromkeys(req.args[0] for req in requests):
        dialogue_step.delay(cid)


@app.task
def group_unanswered(days: float = 30.0) -> int:
    """Group the unanswered questions of the last ``days`` by meaning, for the admin page (runs on the
    NLU worker: it has the retrieval encoder); returns how many groups."""
    from dialogue import unanswered

    try:
        result = unanswered.compute(engine(), embedder(), days)
    except Exception:
        store().r.delete(unanswered.RUNNING_KEY)  # let the next request try again
        raise
    unanswered.store_result(store().r, result)
    log.info("unanswered questions grouped", extra={"questions": result["questions"], "groups": len(result["groups"])})
    return len(result["groups"])


@app.task
def dialogue_step(conversation_id: str) -> int:
    handled = run_conversation(store(), policy(), conversation_id, shop(), llm())
    if handled and needs_sync(conversation_id):
        sync_conversation.delay(conversation_id)
    return handled


def needs_sync(cid: str) -> bool:
    """Is there anyone outside the log to tell: a Telegram or Slack shopper, or the agents' desk?"""
    return not cid.startswith("web:") or channels().desk() is not None


@app.task(bind=True, max_retries=12)
def sync_conversation(self, conversation_id: str) -> None:
    """Send the shopper what they have not received; bring the agents' desk up to date."""
    s = store()
    lock = s.r.lock(f"sb:conv:{{{conversation_id}}}:outlock", timeout=120, blocking_timeout=60)
    if not lock.acquire():
        raise self.retry(countdown=1)
    try:
        chans = channels()
        outbound.deliver_to_shopper(s, chans, conversation_id)
        desk = outbound.desk_for(s, handoff_queue(), chans)
        if desk is not None:
            desk.sync(conversation_id)
    except RateLimited as exc:
        log.warning("rate limited twice in a row; trying later", extra={"conversation_id": conversation_id})
        raise self.retry(countdown=exc.retry_after) from None
    except ConnectionError as exc:
        log.warning("platform unreachable: %s", exc, extra={"conversation_id": conversation_id})
        raise self.retry(countdown=min(2**self.request.retries, 60)) from None
    finally:
        try:
            lock.release()
        except LockError:
            pass  # expired: another run may go on; every step of this one was already recorded


@app.task(bind=True, max_retries=5)
def slack_call(self, method: str, params: dict) -> None:
    """One Web API call for the desk (an ephemeral answer to an agent, a note in a thread)."""
    found = outbound.desk_sender(channels())
    if found is None:
        return
    sender = found[0]
    try:
        sender.call(method, **params)
    except (RateLimited, ConnectionError) as exc:
        raise self.retry(countdown=getattr(exc, "retry_after", 2)) from None
    except SendFailed as exc:
        log.error("Slack call failed: %s", exc)


@lru_cache(maxsize=1)
def handoff_queue() -> HandoffQueue:
    return HandoffQueue(store(), policy())


def busy_notices(s: ConversationStore) -> None:
    """Queued conversations nobody claimed in time: offer to keep waiting or leave a message."""
    q = handoff_queue()
    for cid, _score in s.queue():
        if q.busy_notice(cid, settings.handoff_busy_after_s):
            log.info("told the shopper that agents are busy", extra={"conversation_id": cid})
            if needs_sync(cid):
                sync_conversation.delay(cid)


def sweep_once(s: ConversationStore) -> None:
    for cid in s.stalled(settings.stall_after_s):
        inbox = s.inbox(cid)
        missing = [mid for mid in inbox[:50] if s.annotation(cid, mid) is None]
        for mid in missing:
            annotate.delay(cid, mid)
        if not missing and inbox:
            dialogue_step.delay(cid)
        s.touch_pending(cid)
        log.warning("re-queued a stalled conversation", extra={"conversation_id": cid, "waiting": len(inbox)})


def flush_transcripts(s: ConversationStore, engine) -> None:
    if not s.r.llen(TRANSCRIPTS):
        return
    lock = s.r.lock(TRANSCRIPTS_LOCK, timeout=TRANSCRIPTS_LOCK_S, blocking=False)
    if lock.acquire():
        try:
            transcripts.flush(s.r, engine, lock=lock)
        finally:
            try:
                lock.release()
            except LockError:
                pass  # the lease ran out mid-flush: the flush stopped before trimming what it no longer held


def _housekeeping(stop: threading.Event, name: str, queues: list[str]) -> None:
    s = store()
    if "nlu" in queues:
        nlu()  # load before saying we are alive: /readyz means "can answer"
        embedder()
    policy()
    if "dialogue" in queues:
        shop()
        llm()
    while not stop.is_set():
        try:
            s.heartbeat(name, queues)
            sweep_once(s)
            busy_notices(s)
            if "dialogue" in queues:
                close_idle(s, policy())  # episodes nobody wrote in for their idle time: their outcome
            flush_transcripts(s, engine())  # made (and migrated) on first success, then cached
        except Exception:  # noqa: BLE001 - keep the thread alive through a Redis or DB outage
            log.exception("housekeeping failed; retrying")
        stop.wait(settings.sweep_interval_s)


_stop = threading.Event()


@signals.setup_logging.connect
def _logging(**_kw) -> None:
    setup_logging(settings.log_level, settings.log_format)


@signals.worker_init.connect
def _serve_metrics(**_kw) -> None:
    """This worker's /metrics on SHOPBOT_METRICS_PORT (docs/metrics.md); none when it is 0."""
    if not settings.metrics_port:
        return
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    try:
        metrics.serve(settings.metrics_port, settings.metrics_addr, token)
    except OSError as exc:  # metrics are not worth refusing to work for
        log.error("no /metrics: cannot listen on %s:%s: %s", settings.metrics_addr, settings.metrics_port, exc)
        return
    log.info("metrics served", extra={"metrics_url": f"http://{settings.metrics_addr}:{settings.metrics_port}/metrics"})


@signals.worker_ready.connect
def _start_housekeeping(sender=None, **_kw) -> None:
    name = getattr(sender, "hostname", None) or f"{socket.gethostname()}:{os.getpid()}"
    try:
        queues = sorted(sender.app.amqp.queues.consume_from)
    except AttributeError:  # not started by a Celery consumer: assume every queue
        queues = ["dialogue", "nlu"]
    threading.Thread(target=_housekeeping, args=(_stop, name, queues), name="housekeeping", daemon=True).start()
    if "nlu" in queues:
        threading.Thread(target=_watch_models, args=(_stop,), name="models-watch", daemon=True).start()


@signals.worker_shutdown.connect
def _stop_housekeeping(**_kw) -> None:
    _stop.set()
