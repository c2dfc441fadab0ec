from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("NLU_DATA_DIR", ROOT.parent / "shared" / "data"))


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <module> args`` from the project root, as a user would."""
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def run_main(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> args`` in this process: the command's own ``main(argv)``, its exit status,
    stdout and stderr, without starting Python and importing torch again (seconds per call on two cores).
    Each command is also run once as a real process (``run_cli``) somewhere in the suite."""
    import contextlib
    import importlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = importlib.import_module(module).main(list(args))
        except SystemExit as exc:  # argparse's own errors (exit status 2)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess([module, *args], code or 0, out.getvalue(), err.getvalue())


def sample_csv(src: Path, dest: Path, per_label: int, labels: list[str] | None = None, seed: int = 0) -> Path:
    """A small stratified sample of a real data file."""
    with src.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        if labels is None or r["label"] in labels:
            by_label[r["label"]].append(r)
    rng = random.Random(seed)
    picked = [r for group in by_label.values() for r in rng.sample(group, min(per_label, len(group)))]
    rng.shuffle(picked)
    with dest.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(picked)
    return dest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "intents-bitext-en.csv").is_file():
        pytest.fail(f"training data not found in {DATA}; set NLU_DATA_DIR")
    return DATA


INTENTS_SMALL = ["track_order", "cancel_order", "get_refund", "contact_human_agent"]


@pytest.fixture(scope="session")
def small_models(tmp_path_factory, data_dir):
    """An intent and a sentiment model trained for one epoch on small real samples."""
    from nlu.train import TrainConfig, train

    tmp = tmp_path_factory.mktemp("models")
    intent_csv = sample_csv(data_dir / "intents-bitext-en.csv", tmp / "intents.csv", 80, INTENTS_SMALL)
    sent_en = sample_csv(data_dir / "sentiment-support-tweets-en.csv", tmp / "tweets.csv", 60)
    sent_zh = sample_csv(data_dir / "sentiment-shopping-reviews-zh.csv", tmp / "reviews.csv", 60)
    common = dict(epochs=1, batch_size=16, freeze_layers=9, progress=False)
    intent = train(TrainConfig(task="intent", data=[str(intent_csv)], out=tmp / "intent", **common))
    sentiment = train(
        TrainConfig(
            task="sentiment",
            data=[str(sent_en), str(sent_zh)],
            out=tmp / "sentiment",
            max_length=64,
            lexical_weight=0.3,  # as the default sentiment model: the lexical model blended in
            partial_labels=["reviews.csv"],  # the reviews have no neutral: trained among their own two labels
            **common,
        )
    )
    return {
        "intent_dir": tmp / "intent",
        "sentiment_dir": tmp / "sentiment",
        "intent_csv": intent_csv,
        "sentiment_csvs": [sent_en, sent_zh],
        "intent_metrics": intent,
        "sentiment_metrics": sentiment,
    }


@pytest.fixture(scope="session")
def demo_shop(tmp_path_factory):
    """The demo shop (orders, catalogue, FAQ) in SQLite, with the real e5 encoder, as a dialogue worker has it."""
    from dialogue.check import demo_shop as shop_at
    from shopbot.start import load_demo_data

    url = f"sqlite:///{tmp_path_factory.mktemp('shop') / 'shop.db'}"
    load_demo_data(url)
    return shop_at(url)


# -- the pipeline: real redis-server, Celery worker and gateway processes ------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    from services import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def test_policies(tmp_path_factory) -> Path:
    """The packaged policies with a confidence threshold that suits the small test models."""
    import yaml

    raw = yaml.safe_load((ROOT / "dialogue" / "policies.yaml").read_text(encoding="utf-8"))
    raw["thresholds"]["min_intent_confidence"] = 0.4
    # The small test sentiment model scores plain Chinese questions down to -0.7 and angry English
    # ones at -0.83: only the latter count as angry, and only they get an apology.
    raw["thresholds"]["angry_sentiment_score"] = -0.8
    raw["mood"]["negative_score"] = -0.8
    raw["intents"]["track_order"]["quick_replies"] = {"en": ["Track another order"], "zh": ["查询其他订单"]}
    path = tmp_path_factory.mktemp("policies") / "policies.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


# The pipeline's models know these intents (with the hand-written Chinese seed rows for them),
# enough for the scripted conversations of tests/test_conversations.py to take their paths.
PIPELINE_INTENTS = [
    "track_order", "cancel_order", "get_refund", "contact_human_agent", "check_payment_methods",
    "delivery_options", "complaint", "track_refund",
]  # fmt: skip


def chat_rows(labels: set[str] | None, per_label: int, seed: int = 0) -> list[dict[str, str]]:
    """Up to ``per_label`` rows of each label from each of the project's chat files of a task
    (``nlu/data/intents-*-chat*.csv`` when labels are given, ``sentiment-chat-*.csv`` when not)."""
    names = ["intents-en-chat.csv", "intents-zh-chat.csv", "intents-chat-more.csv"] if labels else [
        "sentiment-chat-en.csv", "sentiment-chat-zh.csv", "sentiment-chat-more.csv"]  # fmt: skip
    rng, picked = random.Random(seed), []
    for name in names:
        with (ROOT / "nlu" / "data" / name).open(encoding="utf-8") as fh:
            by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
            for r in csv.DictReader(fh):
                if labels is None or r["label"] in labels:
                    by_label[r["label"]].append({"text": r["text"], "label": r["label"]})
        picked += [r for group in by_label.values() for r in rng.sample(group, min(per_label, len(group)))]
    rng.shuffle(picked)
    return picked


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def pipeline_models(tmp_path_factory, data_dir) -> Path:
    """A models folder for the pipeline, trained as the default models are but small: an intent model
    over PIPELINE_INTENTS and out_of_scope (English samples, the Chinese seed rows and the project's
    chat phrasings) and a sentiment model on tweets, reviews (among their own two labels) and chat
    messages, two to three epochs: small, but sure enough of themselves to drive a conversation
    and not thrown by the machine it is trained on (about two minutes on two cores)."""
    from nlu.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("pipeline-models")
    intents = sample_csv(data_dir / "intents-bitext-en.csv", folder / "intents.csv", 50, PIPELINE_INTENTS)
    with (ROOT / "nlu" / "data" / "intents-zh-seed.csv").open(encoding="utf-8") as fh:
        zh = [r for r in csv.DictReader(fh) if r["label"] in PIPELINE_INTENTS]
    write_rows(folder / "intents-zh.csv", zh)
    write_rows(folder / "intents-chat.csv", chat_rows({*PIPELINE_INTENTS, "out_of_scope"}, 25))
    sent_en = sample_csv(data_dir / "sentiment-support-tweets-en.csv", folder / "tweets.csv", 150)
    sent_zh = sample_csv(data_dir / "sentiment-shopping-reviews-zh.csv", folder / "reviews.csv", 150)
    sent_chat = write_rows(folder / "sentiment-chat.csv", chat_rows(None, 60))
    common = dict(batch_size=16, freeze_layers=9, progress=False, baseline=False)
    train(
        TrainConfig(
            task="intent", data=[str(intents), str(folder / "intents-zh.csv"), str(folder / "intents-chat.csv")],
            out=folder / "intent", epochs=3, oversample={"intents-zh.csv": 2}, **common,
        )
    )  # fmt: skip
    train(
        TrainConfig(
            task="sentiment", data=[str(sent_en), str(sent_zh), str(sent_chat)], out=folder / "sentiment", epochs=2,
            max_length=64, partial_labels=["reviews.csv"], **common,
        )
    )  # fmt: skip
    return folder


@pytest.fixture(scope="session")
def platforms():
    """Local Telegram Bot API and Slack Web API servers (tests/platforms.py), for the product to call."""
    from platforms import FakeSlack, FakeTelegram, Servers
    from services import AGENT_CHANNEL, SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, SLACK_TOKEN, TELEGRAM_TOKEN, free_port

    tg, sl = FakeTelegram(TELEGRAM_TOKEN), FakeSlack(SLACK_TOKEN)
    sl.apps[SLACK_CLIENT_ID] = SLACK_CLIENT_SECRET  # the Slack app, for "Add to Slack"
    sl.members[AGENT_CHANNEL] = ["UBOT", "U0AGENT1", "U0AGENT2"]  # the agents; shoppers are not in it
    ports = {"telegram": free_port(), "slack": free_port()}
    servers = Servers({ports["telegram"]: tg.app(), ports["slack"]: sl.app()}).start()
    yield {
        "telegram": tg,
        "slack": sl,
        "telegram_url": f"http://127.0.0.1:{ports['telegram']}/bot",
        "slack_url": f"http://127.0.0.1:{ports['slack']}/api/",
    }
    servers.stop()


def link_version(src: Path, dest: Path) -> Path:
    """A copy of a models folder's intent/ and sentiment/ whose files are hard links to the original's;
    change one by replacing it (test_promote.rewrite), never by writing through the link."""
    from nlu.versions import TASKS

    for task in TASKS:
        shutil.copytree(src / task, dest / task, copy_function=os.link)
    return dest


@pytest.fixture(scope="session")
def product(tmp_path_factory, redis_server, pipeline_models, test_policies, platforms):
    """Gateway, an NLU worker and a dialogue worker on the test Redis, with small real models; yields a handle."""
    from services import gateway, platform_env, product_env, wait_ready, worker

    from shopbot.start import load_demo_data

    tmp = tmp_path_factory.mktemp("product")
    # Every test of the shared product writes from 127.0.0.1: the per-address limit (tested on gateways of
    # their own, test_admin.py) would refuse them in whichever minute they happen to crowd into.
    # Its models folder is its own, of hard links to pipeline_models: test_promote.py promotes a version
    # into it (and rolls back) while the product runs, as an operator would; the worker looks every 0.5 s.
    # That test's chats write faster than a shopper may (20 a minute).
    env = product_env(
        redis_server.url, link_version(pipeline_models, tmp / "models"), tmp, test_policies,
        SHOPBOT_RATE_IP_PER_MIN="100000", SHOPBOT_RATE_SESSION_PER_MIN="1000", SHOPBOT_MODELS_CHECK_S="0.5",
        **platform_env(platforms),
    )  # fmt: skip
    load_demo_data(env["SHOPBOT_DATABASE_URL"])  # the demo shop's orders, catalogue and FAQ, as `start` loads them
    # As the product runs them: one NLU worker, one dialogue worker.
    workers = [worker(env, tmp / "worker-nlu.log", "nlu"), worker(env, tmp / "worker-dialogue.log", "dialogue")]
    g, url = gateway(env, tmp / "gateway.log")
    wait_ready(url, 180, workers[0])
    handle = {"url": url, "env": env, "tmp": tmp, "workers": workers, "gateway": g, "redis_url": redis_server.url}
    yield handle
    g.stop()
    for w in handle["workers"]:
        w.stop()
