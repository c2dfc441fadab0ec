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
