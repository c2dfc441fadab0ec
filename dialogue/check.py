"""Scripted conversations through the real dialogue engine and NLU models (tests/conversations/README.md).

    python -m dialogue.check tests/conversations [--models DIR] [--tag TAG] [--database-url URL]

Each conversation's shopper messages are annotated by the NLU models (all of a
run's messages in batches first: the engine is pure, so this changes nothing
but the time), then stepped through :func:`dialogue.engine.step` against a
shop's data: the demo shop in a temporary SQLite database unless
``--database-url`` names another. PASS/FAIL per conversation, a diff for each
failed step, and the summary as JSON on the last line. Exit status: 0 all
passed, 1 some failed, 2 a bad file or a missing model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from .engine import Annotation, StepResult, agent_claimed, agents_busy, resolved, step
from .policy import Policy, load_policy
from .state import ConversationState

CHECKS = {"say", "event", "action", "intent", "contains", "not_contains", "quick_replies", "handoff", "slots"} | {
    "apology"
}
EVENTS = ("agents_busy", "agent_joined", "resolved")


class ConversationFileError(ValueError):
    """A conversation file that cannot be read or breaks the format; the message says where."""


@dataclass
class Conversation:
    name: str
    lang: str
    steps: list[dict]
    customer: str | None = None
    tags: tuple[str, ...] = ()
    source: str = ""


@dataclass
class Outcome:
    conversation: Conversation
    diffs: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.diffs


def load_conversations(folder: str | Path, tag: str | None = None) -> list[Conversation]:
    """Every conversation in the folder's ``*.yaml`` files (with ``tag``, only those tagged so)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else [folder]
    if not files or not all(f.is_file() for f in files):
        raise ConversationFileError(f"{folder}: no conversation files (*.yaml) there")
    out: list[Conversation] = []
    names: set[str] = set()
    for path in files:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        except (OSError, yaml.YAMLError) as exc:
            raise ConversationFileError(f"{path}: cannot be read as YAML: {exc}") from exc
        if not isinstance(raw, list):
            raise ConversationFileError(f"{path}: must hold a list of conversations")
        for i, c in enumerate(raw):
            where = f"{path.name}, conversation {i + 1}"
            if not isinstance(c, dict) or not c.get("name") or not isinstance(c.get("steps"), list) or not c["steps"]:
                raise ConversationFileError(f"{where}: needs a name and a list of steps")
            name = str(c["name"])
            if name in names:
                raise ConversationFileError(f"{where}: the name {name!r} is used twice")
            names.add(name)
            lang = str(c.get("lang", "en"))
            if lang not in ("en", "zh"):
                raise ConversationFileError(f"{where} ({name}): lang must be en or zh, not {lang!r}")
            for j, s in enumerate(c["steps"]):
                _check_step(s, f"{where} ({name}), step {j + 1}")
            customer = c.get("customer")
            tags = tuple(str(t) for t in c.get("tags") or ())
            conv = Conversation(name, lang, c["steps"], str(customer) if customer else None, tags, path.name)
            if tag is None or tag in conv.tags:
                out.append(conv)
    return out


def _check_step(s: object, where: str) -> None:
    if not isinstance(s, dict) or ("say" in s) == ("event" in s):
        raise ConversationFileError(f"{where}: a step has either `say` or `event`")
    unknown = set(s) - CHECKS
    if unknown:
        raise ConversationFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if "event" in s and s["event"] not in EVENTS:
        raise ConversationFileError(f"{where}: unknown event {s['event']!r} ({', '.join(EVENTS)})")


Annotator = Callable[[list[str]], list[Annotation]]


def run(
    conversations: list[Conversation], annotate: Annotator, policy: Policy, shop, now: float = 1_000_000.0
) -> list[Outcome]:
    """Every conversation through the engine; the differences from what each step expects."""
    texts = sorted({str(s["say"]) for c in conversations for s in c.steps if "say" in s})
    anns = dict(zip(texts, annotate(texts), strict=True))
    outcomes = []
    for conv in conversations:
        state = ConversationState(locale=conv.lang)
        outcome = Outcome(conv)
        for i, expected in enumerate(conv.steps):
            now += 5.0
            if "event" in expected:
                state, result, ann = _event(expected["event"], state, policy, now), None, None
            else:
                text = str(expected["say"])
                ann = anns[text]
                before = state.status
                result = step(state, text, ann, policy, now, shop, conv.customer)
                state = result.state
                if before != "bot":  # a hand-off is from the bot to a person; a bump in the queue is none
                    result = replace(result, handoff=None)
            what = f"step {i + 1}" + (f" {expected['say']!r}" if "say" in expected else f" ({expected['event']})")
            outcome.diffs += [f"{what}: {d}" for d in _compare(expected, result, ann, state, policy)]
        outcomes.append(outcome)
    return outcomes


def _event(name: str, state: ConversationState, policy: Policy, now: float) -> ConversationState:
    if name == "agents_busy":
        return agents_busy(state, policy, now)[0]
    if name == "agent_joined":
        return agent_claimed(state, "agent", policy, now)[0]
    return resolved(state, policy, now)[0]


def _as_list(v: object) -> list:
    return list(v) if isinstance(v, list | tuple) else [v]


def _compare(
    exp: dict, result: StepResult | None, ann: Annotation | None, state: ConversationState, policy: Policy
) -> Iterable[str]:
    if result is None:  # an event: what it says is the engine's own, only the state is checked
        if "quick_replies" in exp:
            busy = policy.quick_replies(state.locale, "agents_busy_quick_replies")
            missing = [q for q in _as_list(exp["quick_replies"]) if q not in busy]
            if missing:
                yield f"quick replies {missing} missing"
        return
    said = "\n".join(r.text for r in result.replies)
    low = said.lower()
    shown = f"; the bot said: {said!r}" if said else "; the bot said nothing"
    if "action" in exp and _same(result.action) not in [_same(str(a)) for a in _as_list(exp["action"])]:
        yield f"action: expected {exp['action']}, got {result.action} (intent {_intent(ann)}){shown}"
    if "intent" in exp and ann is not None and ann.intent != exp["intent"]:
        yield f"intent: expected {exp['intent']}, got {_intent(ann)}"
    for s in _as_list(exp.get("contains", [])):
        if str(s).lower() not in low:
            yield f"reply lacks {s!r}{shown}"
    for s in _as_list(exp.get("not_contains", [])):
        if str(s).lower() in low:
            yield f"reply must not contain {s!r}{shown}"
    if "quick_replies" in exp:
        offered = [q for r in result.replies for q in r.quick_replies]
        missing = [q for q in _as_list(exp["quick_replies"]) if q not in offered]
        if missing:
            yield f"quick replies {missing} missing (offered {offered})"
    if "handoff" in exp:
        want = None if exp["handoff"] in (None, "none") else str(exp["handoff"])
        got = result.handoff.reason if result.handoff else None
        if want != got:
            yield f"hand-off: expected {want or 'none'}, got {got or 'none'}{shown}"
    for k, v in (exp.get("slots") or {}).items():
        if str(state.slots.get(k)) != str(v):
            yield f"slot {k}: expected {v!r}, got {state.slots.get(k)!r}"
    if "apology" in exp:
        apology = policy.message("apology", state.locale)
        # An angry hand-off's notice is the apology ("I'm sorry about this. I'm bringing in ...").
        apologies = (apology, policy.message("handoff_angry", state.locale))
        first = result.replies[0].text if result.replies else ""
        if exp["apology"] and not first.startswith(apologies):
            yield f"expected an apology first{shown} (sentiment {_mood(ann)})"
        if not exp["apology"] and any(apology in r.text for r in result.replies):
            yield f"apologised to a message that needs none (sentiment {_mood(ann)})"


# Actions that are one and the same answer: "when will order X arrive" and "where is order X" both
# get where the order is and when it is expected (dialogue/answers.py: for_order).
SAME_ANSWER = {"order:delivery_period": "order:track_order"}


def _same(action: str) -> str:
    return SAME_ANSWER.get(action, action)


def _intent(ann: Annotation | None) -> str:
    return f"{ann.intent} {ann.intent_confidence:.2f}" if ann else "-"


def _mood(ann: Annotation | None) -> str:
    return f"{ann.sentiment} {ann.sentiment_score:+.2f}" if ann else "-"


def summary(outcomes: list[Outcome]) -> dict[str, object]:
    passed = sum(o.passed for o in outcomes)
    total = len(outcomes)
    return {
        "passed": passed,
        "failed": total - passed,
        "total": total,
        "pass_rate": round(passed / total, 4) if total else 0.0,
        "failures": [o.conversation.name for o in outcomes if not o.passed],
    }


def nlu_annotator(models_dir: Path) -> Annotator:
    from nlu.inference import NLU
    from nlu.versions import in_folder

    models = in_folder(models_dir)  # the current version of a versioned models folder
    if models.missing():
        raise FileNotFoundError(
            f"no {models.missing()[0]} model under {models.path} (python -m nlu.build_default trains them)"
        )
    nlu = NLU.load(models.intent_dir, models.sentiment_dir)

    def annotate(texts: list[str]) -> list[Annotation]:  # NLU.annotate batches by itself
        return [
            Annotation(a.language, a.intent, a.intent_confidence, a.sentiment, a.sentiment_score)
            for a in nlu.annotate(texts)
        ]

    return annotate


def demo_shop(database_url: str | None):
    """The shop to talk to: the database at ``database_url``, or the demo shop in a temporary SQLite file."""
    from nlu.embed import Embedder
    from shopbot.db import engine_for
    from shopbot.start import load_demo_data

    from .orders import SqlOrders
    from .shop import Shop

    if database_url is None:
        database_url = f"sqlite:///{tempfile.mkdtemp(prefix='shopbot-check-')}/shop.db"
        load_demo_data(database_url)
    engine = engine_for(database_url)
    shop = Shop(SqlOrders(engine), engine, Embedder.load())
    shop.refresh(force=True)
    return shop


def main(argv: list[str] | None = None) -> int:
    from shopbot.settings import PACKAGE_ROOT

    ap = argparse.ArgumentParser(prog="python -m dialogue.check", description=__doc__.split("\n\n")[0])
    ap.add_argument("conversations", type=Path, help="a folder of *.yaml conversation files (or one file)")
    ap.add_argument("--models", type=Path, default=PACKAGE_ROOT / "models", help="models folder (its current version)")
    ap.add_argument("--tag", help="run only the conversations with this tag")
    ap.add_argument("--database-url", help="the shop's database (default: the demo shop in a temporary SQLite file)")
    ap.add_argument("--policies", type=Path, help="a policies file (default: the packaged one)")
    ap.add_argument("--quiet", action="store_true", help="print only the failures and the summary")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        conversations = load_conversations(args.conversations, args.tag)
        policy = load_policy(args.policies)
        annotate = nlu_annotator(args.models)
    except (ConversationFileError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not conversations:
        print(f"error: no conversation in {args.conversations}" + (f" tagged {args.tag}" if args.tag else ""))
        return 2
    outcomes = run(conversations, annotate, policy, demo_shop(args.database_url))
    for o in outcomes:
        if o.passed and not args.quiet:
            print(f"PASS  {o.conversation.name}")
        elif not o.passed:
            print(f"FAIL  {o.conversation.name}  ({o.conversation.source})")
            for d in o.diffs:
                print(f"      - {d}")
    result = summary(outcomes)
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
