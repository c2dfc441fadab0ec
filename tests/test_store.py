"""The conversation store's lock on a real redis-server: a short lease, renewed while held."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from shopbot.store import ConversationStore, LockLost, key

ROOT = Path(__file__).resolve().parent.parent


def test_a_lock_is_a_lease_renewed_while_its_holder_works(redis_server):
    store = ConversationStore.from_url(redis_server.url)
    cid = "web:default:lease-held"
    with store.lock(cid, lease_ms=600) as token:
        assert token
        time.sleep(1.5)  # more than twice the lease: still ours, renewed
        assert store.r.get(key(cid, "lock")) == token
        assert 0 < store.r.pttl(key(cid, "lock")) <= 600
        with store.lock(cid) as other:
            assert other is None  # busy
    assert store.r.get(key(cid, "lock")) is None  # let go at the end


def test_a_holder_that_dies_lets_go_within_its_lease_and_cannot_commit(redis_server):
    """A worker killed mid-step (SIGKILL: no finally, no unlock) frees the conversation within the lease,
    so the stall sweep's next worker takes it over in seconds, not after a 30 s lock."""
    store = ConversationStore.from_url(redis_server.url)
    cid = "web:default:lease-dead"
    code = (
        "import time\n"
        "from shopbot.store import ConversationStore\n"
        f"s = ConversationStore.from_url({redis_server.url!r})\n"
        f"with s.lock({cid!r}, lease_ms=1000) as t:\n"
        "    print(t, flush=True)\n"
        "    time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        token = holder.stdout.readline().strip()
        assert token and store.r.get(key(cid, "lock")) == token
        time.sleep(1.6)
        assert store.r.get(key(cid, "lock")) == token  # alive: renewed past its 1 s lease
        holder.kill()
        holder.wait(10)
        freed_at = time.monotonic()
        while store.r.get(key(cid, "lock")) is not None:
            assert time.monotonic() - freed_at < 2.0, "a dead holder kept the lock past its lease"
            time.sleep(0.05)
    finally:
        holder.kill()
        holder.stdout.close()
    with store.lock(cid) as mine:
        assert mine  # the next worker gets it
        # The dead holder's token commits nothing.
        mid = store.record_inbound(cid, "hello", client_message_id="lease-1")[0]
        with pytest.raises(LockLost):
            store.commit(cid, token, {}, consume=mid)


def test_the_transcript_flusher_holds_a_short_lease_and_never_trims_after_losing_it(redis_server, tmp_path):
    """A worker killed mid-flush holds the transcripts up for a short lease, not a minute; a flush that
    outlived its lease writes its batch (a repeat adds nothing twice) but trims nothing it no longer holds."""
    import json

    from shopbot import db, transcripts
    from shopbot.store import TRANSCRIPTS, TRANSCRIPTS_LOCK, TRANSCRIPTS_LOCK_S
    from workers.tasks import flush_transcripts

    engine = db.engine_for(f"sqlite:///{tmp_path / 'flush.db'}")
    store = ConversationStore.from_url(redis_server.url)
    r = store.r
    r.delete(TRANSCRIPTS, TRANSCRIPTS_LOCK)
    meta = {"channel": "web", "sender": "s1"}
    rows = [transcripts.transcript_row("web:default:s1", meta, f"{i}-0", "shopper", f"m{i}", i) for i in range(5)]
    r.rpush(TRANSCRIPTS, *[json.dumps(row) for row in rows])

    # The lease ran out mid-flush and another flusher holds the lock now: the batch reaches SQL, stays queued.
    lost = r.lock(TRANSCRIPTS_LOCK, timeout=TRANSCRIPTS_LOCK_S)
    assert lost.acquire(blocking=False)
    r.delete(TRANSCRIPTS_LOCK)
    other = r.lock(TRANSCRIPTS_LOCK, timeout=TRANSCRIPTS_LOCK_S)
    assert other.acquire(blocking=False)
    assert transcripts.flush(r, engine, batch=2, lock=lost) == 0
    assert r.llen(TRANSCRIPTS) == 5 and len(transcripts.conversation(engine, "web:default:s1")) == 2
    # The housekeeping flush waits while the lock is held, and the lease of a holder that died is short.
    flush_transcripts(store, engine)
    assert r.llen(TRANSCRIPTS) == 5
    assert 0 < r.pttl(TRANSCRIPTS_LOCK) <= TRANSCRIPTS_LOCK_S * 1000 <= 15_000
    r.delete(TRANSCRIPTS_LOCK)  # as if the lease ran out
    flush_transcripts(store, engine)
    assert r.llen(TRANSCRIPTS) == 0 and r.get(TRANSCRIPTS_LOCK) is None
    assert [row["text"] for row in transcripts.conversation(engine, "web:default:s1")] == [f"m{i}" for i in range(5)]
