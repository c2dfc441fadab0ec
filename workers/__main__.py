"""Start a Celery worker for one role.

    python -m workers nlu         # the NLU models, batched (queue "nlu")
    python -m workers dialogue    # dialogue steps, and sending to Telegram / Slack (queues "dialogue", "outbound")
    python -m workers all         # both in one process (small setups, tests)

Options after the role go to ``celery worker`` as they are (``-n NAME``,
``-l DEBUG``, ``-c N`` to change the thread count...). Run one ``nlu`` worker
per CPU machine or GPU, and as many ``dialogue`` workers as you like.

Why the roles are separate processes, on the 2-core machine: a dialogue step is
short Python work, a model call is long native work; in one process they fight
over the GIL and the model's batches shrink. Why so many threads for ``nlu``: a
thread that waits for the model costs nothing, and every waiting thread's
messages join the next model call (workers/combiner.py).
"""

from __future__ import annotations

import sys

ROLES = {
    "nlu": ("nlu", 32),
    "dialogue": ("dialogue,outbound", 8),  # outbound: replies to Telegram / Slack, the agents' desk
    "all": ("nlu,dialogue,outbound", 32),
}


def worker_argv(role: str, *extra: str) -> list[str]:
    """The ``celery worker`` arguments for a role."""
    queues, threads = ROLES[role]
    argv = ["worker", "-Q", queues, "--pool", "threads", "-c", str(threads), "-l", "INFO"]
    argv += ["--without-gossip", "--without-mingle", "-n", f"{role}@%h"]
    return argv + list(extra)  # later options win


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ROLES:
        print(f"usage: python -m workers {{{'|'.join(ROLES)}}} [celery worker options]", file=sys.stderr)
        return 2
    from .app import app

    app.worker_main(worker_argv(args[0], *args[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
