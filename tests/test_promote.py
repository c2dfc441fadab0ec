"""Retraining, gated: model versions, ``nlu.promote`` (check sets, tolerance, rollback), ``nlu.build_default
--feedback``, and NLU workers switching to a promoted version while messages flow."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from nlu import versions
from nlu.build_default import FEEDBACK_OVERSAMPLE, feedback_task, with_feedback
from nlu.promote import main as promote

from .conftest import PIPELINE_INTENTS, ROOT, link_version, run_cli, run_main, write_rows

CHECK = ROOT / "nlu" / "data" / "check"


# -- versions and pointers (no models) -------------------------------------------------------------------


def fake_version(models: Path, name: str) -> Path:
    """A version folder that looks complete to nlu.versions (nothing loads it)."""
    path = models if name == versions.FLAT else models / versions.VERSIONS / name
    for task in versions.TASKS:
        (path / task).mkdir(parents=True, exist_ok=True)
        (path / task / "nlu_model.json").write_text("{}")
    return path


def test_flat_models_are_the_implicit_version_until_one_is_promoted(tmp_path):
    fake_version(tmp_path, versions.FLAT)
    assert versions.current(tmp_path) == versions.ModelVersion("flat", tmp_path)
    assert versions.previous(tmp_path) is None
    assert versions.in_folder(tmp_path).path == tmp_path
    fake_version(tmp_path, "20261104-153012")
    assert versions.names(tmp_path) == ["flat", "20261104-153012"]
    assert versions.set_current(tmp_path, "20261104-153012") == "flat"
    assert (tmp_path / "current").read_text() == "20261104-153012\n"
    assert versions.current(tmp_path).intent_dir == tmp_path / "versions" / "20261104-153012" / "intent"
    assert versions.in_folder(tmp_path).name == "20261104-153012"
    assert versions.rollback(tmp_path) == ("20261104-153012", "flat")
    assert versions.current_name(tmp_path) == "flat" and versions.previous(tmp_path).name == "20261104-153012"
    assert versions.rollback(tmp_path) == ("flat", "20261104-153012")  # a second rollback undoes the first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "intent", "previous", "sentiment", "versions"]


def test_versions_refuse_bad_names_missing_models_and_a_rollback_with_nothing_before(tmp_path):
    for bad in ("", "../x", ".hidden", "current", "flat", "intent", "a b", "x" * 65):
        with pytest.raises(versions.VersionError, match="cannot name a version"):
            versions.check_name(bad)
    (tmp_path / "versions" / "half" / "intent").mkdir(parents=True)
    with pytest.raises(versions.VersionError, match="no intent and no sentiment model"):
        versions.set_current(tmp_path, "half")
    with pytest.raises(versions.VersionError, match="nothing to roll back to"):
        versions.rollback(tmp_path)
    assert not (tmp_path / "current").exists()
    assert versions.new_name(datetime(2026, 11, 4, 15, 30, 12, tzinfo=UTC)) == "20261104-153012"  # sorts by time


def test_a_candidate_is_a_version_name_or_a_folder_copied_in_when_promoted(tmp_path):
    from nlu.promote import file_in, resolve

    models = tmp_path / "models"
    fake_version(models, "v1")
    outside = fake_version(tmp_path / "elsewhere", "v2")  # tmp/elsewhere/versions/v2
    assert resolve(models, "v1") == (versions.ModelVersion("v1", models / "versions" / "v1"), None)
    assert resolve(models, str(models / "versions" / "v1"))[1] is None
    assert resolve(models, "flat") == (versions.ModelVersion("flat", models), None)
    assert resolve(models, str(outside)) == (versions.ModelVersion("v2", outside), outside)
    with pytest.raises(versions.VersionError, match="no version 'v3'"):
        resolve(models, "v3")
    file_in(models, outside, "v2")
    assert not versions.version(models, "v2").missing() and versions.names(models) == ["v1", "v2"]
    with pytest.raises(versions.VersionError, match="exists already"):
        resolve(models, str(outside))


# -- nlu.build_default --feedback (no training) ---------------------------------------------------------


def test_feedback_files_join_their_tasks_recipe_oversampled(tmp_path):
    intent = write_rows(tmp_path / "corrections-intent.csv", [{"text": "wheres my stuff", "label": "track_order"}])
    sentiment = write_rows(tmp_path / "corrections-sentiment.csv", [{"text": "ok thanks", "label": "neutral"}])
    assert (feedback_task(intent), feedback_task(sentiment)) == ("intent", "sentiment")
    specs = {"intent": {"files": ["i.csv"], "oversample": {"i.csv": 2}}, "sentiment": {"files": ["s.csv"]}}
    got = with_feedback(specs, [intent, sentiment])
    assert got["intent"]["files"] == ["i.csv", intent.resolve()]
    assert got["intent"]["oversample"] == {"i.csv": 2, "corrections-intent.csv": FEEDBACK_OVERSAMPLE}
    assert got["sentiment"]["files"] == ["s.csv", sentiment.resolve()]
    assert specs["intent"]["files"] == ["i.csv"]  # the recipe itself is left as it was
    clash = write_rows(tmp_path / "i.csv", [{"text": "hi", "label": "neutral"}])
    with pytest.raises(ValueError, match="already named i.csv"):
        with_feedback(specs, [clash])


def test_a_feedback_build_writes_a_new_version_and_leaves_current_alone(tmp_path, monkeypatch):
    from nlu import build_default

    models = tmp_path / "models"
    fake_version(models, "v1")
    versions.set_current(models, "v1")
    corrections = write_rows(tmp_path / "corrections-intent.csv", [{"text": "wheres my stuff", "label": "track_order"}])
    trained = []

    def train(data, out, force, specs, progress, derived):  # what build() leaves: both models, nothing else
        trained.append((out, specs["intent"]["files"][-1], derived))
        fake_version(out.parent.parent, out.name)

    monkeypatch.setattr(build_default, "build", train)
    out = build_default.build_version(tmp_path / "data", models, [corrections], name="v2")
    assert out == models / "versions" / "v2" and trained == [(out, corrections.resolve(), models / ".data")]
    info = json.loads((out / "version.json").read_text())
    assert info["version"] == "v2" and info["serving_when_made"] == "v1"
    assert info["feedback"] == [
        {"path": str(corrections.resolve()), "task": "intent", "rows": 1, "sha256": info["feedback"][0]["sha256"]}
    ]
    assert versions.current_name(models) == "v1"
    with pytest.raises(versions.VersionError, match="already exists"):
        build_default.build_version(tmp_path / "data", models, [corrections], name="v2")
    (models / "versions" / "v3" / ".intent.partial").mkdir(parents=True)  # a training that did not finish
    assert build_default.build_version(tmp_path / "data", models, [], name="v3") == models / "versions" / "v3"
    assert not (models / "versions" / "v3" / ".intent.partial").exists()
    stamp = build_default.build_version(tmp_path / "data", models, []).name  # named by the time by default
    assert versions.names(models) == [stamp, "v1", "v2", "v3"]  # in name order


def test_build_default_feedback_errors_come_before_any_training(tmp_path):
    models = tmp_path / "models"
    r = run_main("nlu.build_default", "--models-dir", str(models), "--feedback", str(tmp_path / "none.csv"))
    assert r.returncode == 2 and "none.csv: no such file" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("text\nhello\n")
    r = run_main("nlu.build_default", "--models-dir", str(models), "--feedback", str(bad), "--version", "v9")
    assert r.returncode == 2 and "'label'" in r.stderr
    r = run_main("nlu.build_default", "--feedback", str(bad), "--task", "intent")
    assert r.returncode == 2 and "--task and --force do not apply" in r.stderr
    assert not models.exists()


# -- the worker's switch (no models: the loader is replaced) --------------------------------------------


def test_a_worker_switches_only_to_a_version_that_loads_and_keeps_serving_otherwise(tmp_path, monkeypatch, caplog):
    from workers import tasks

    for name in ("v1", "v2", "broken"):
        fake_version(tmp_path, name)
    versions.set_current(tmp_path, "v1")
    loads = []

    def load(v):
        loads.append(v.name)
        if v.name == "broken":
            raise OSError("model.safetensors: truncated")
        return f"models of {v.name}"

    monkeypatch.setattr(tasks, "_serving", ("v1", "models of v1"))
    monkeypatch.setattr(tasks, "_failed", None)
    monkeypatch.setattr(tasks, "_load_nlu", load)
    assert tasks.switch_models(tmp_path) is None and loads == []  # nothing changed: not even a load
    versions.set_current(tmp_path, "broken")
    assert tasks.switch_models(tmp_path) is None
    assert tasks.serving() == ("v1", "models of v1") and loads == ["broken"]
    assert "could not be loaded; still serving v1" in caplog.text
    assert tasks.switch_models(tmp_path) is None and loads == ["broken"]  # not tried again every few seconds...
    time.sleep(0.01)
    versions.set_current(tmp_path, "broken")
    assert tasks.switch_models(tmp_path) is None and loads == ["broken", "broken"]  # ...until current is rewritten
    versions.set_current(tmp_path, "v2")
    assert tasks.switch_models(tmp_path) == "v2"
    assert tasks.serving() == ("v2", "models of v2")
    (tmp_path / "current").write_text("no-such-version\n")
    assert tasks.switch_models(tmp_path) is None and tasks.serving()[0] == "v2"


# -- nlu.promote on small real models --------------------------------------------------------------------


def rewrite(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def sharper(folder: Path, factor: float = 0.8) -> Path:
    """The same intent model with its temperature lowered: the same answers, surer of them."""
    meta_file = folder / "intent" / "nlu_model.json"
    meta = json.loads(meta_file.read_text())
    meta["temperature"] *= factor
    rewrite(meta_file, json.dumps(meta).encode())
    return folder


def scrambled(folder: Path) -> Path:
    """The intent model with its head's rows rolled by one: every intent read as another."""
    from safetensors.torch import load_file, save_file

    head_file = folder / "intent" / "head.safetensors"
    head = {k: v.roll(1, 0) for k, v in load_file(str(head_file)).items()}
    head_file.unlink()
    save_file(head, str(head_file))
    return folder


@pytest.fixture(scope="module")
def check_dir(tmp_path_factory) -> Path:
    """A small frozen check set, taken from the real ones: the pipeline's intents, out of scope, sentiment."""
    folder = tmp_path_factory.mktemp("check")

    def take(name: str, keep, per: int) -> None:
        with (CHECK / name).open(encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows, seen = [], {}
            for r in reader:
                group = r.get("label") or r.get("category")
                if keep(r) and seen.get(group, 0) < per:
                    seen[group] = seen.get(group, 0) + 1
                    rows.append(r)
        with (folder / name).open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=reader.fieldnames)
            w.writeheader()
            w.writerows(rows)

    take("intents-en.csv", lambda r: r["label"] in PIPELINE_INTENTS, 3)
    take("out-of-scope-en.csv", lambda r: True, 3)
    take("sentiment-chat-en.csv", lambda r: True, 5)
    return folder


@pytest.mark.slow
def test_promote_refuses_a_worse_candidate_takes_an_equal_one_and_rolls_back(
    tmp_path, pipeline_models, check_dir, capsys, monkeypatch
):
    models = link_version(pipeline_models, tmp_path / "models")  # the flat layout, as before versions
    sharper(link_version(pipeline_models, models / "versions" / "surer"))
    scrambled(link_version(pipeline_models, models / "versions" / "worse"))
    corrections = write_rows(tmp_path / "corrections.csv", [{"text": "wheres my parcel", "label": "track_order"}])
    common = ["--models", str(models), "--check-dir", str(check_dir), "--corrections", str(corrections)]
    common += ["--database-url", ""]  # none: the corrections file only

    assert promote(["worse", *common]) == 1
    out, err = capsys.readouterr()
    assert "refused: worse is worse than flat on" in err and "intents-en.csv" in err and "flat stays current" in err
    assert "corrections: corrections.csv" in out and "(shown, not a gate)" in out
    assert not (models / "current").exists()

    assert promote(["surer", *common]) == 0
    out, _ = capsys.readouterr()
    table = {row[0]: row for row in map(str.split, out.splitlines()) if row and row[0].endswith((".csv", "ions:"))}
    assert set(table) == {"intents-en.csv", "out-of-scope-en.csv", "sentiment-chat-en.csv", "corrections:"}
    assert table["intents-en.csv"][3] == table["intents-en.csv"][4]  # same answers: the same accuracy
    assert "promoted: surer is current (it was flat)" in out
    assert (versions.current_name(models), versions.previous(models).name) == ("surer", "flat")
    monkeypatch.setenv("NLU_MODELS_DIR", str(models))
    from nlu import inference

    loaded = []

    def just_the_path(path, device=None):
        loaded.append(Path(path))
        raise LookupError("the test wants the path only")

    monkeypatch.setattr(inference, "load_model", just_the_path)
    with pytest.raises(LookupError):
        inference.NLU.load()
    assert loaded == [models / "versions" / "surer" / "intent"]  # the runtime's default: the current version

    assert promote(["--rollback", "--models", str(models)]) == 0
    assert "rolled back: flat is current again" in capsys.readouterr().out
    assert (versions.current_name(models), versions.previous(models).name) == ("flat", "surer")
    assert promote(["no-such-version", "--models", str(models)]) == 2
    assert "no version 'no-such-version'" in capsys.readouterr().err


# -- a promotion while messages flow: the shared product (real Redis, NLU and dialogue workers, gateway) --


def switched_to(log: Path, name: str, since: int) -> bool:
    """Whether the NLU worker's log, after byte ``since``, says it switched to version ``name``."""
    with log.open("rb") as fh:
        fh.seek(since)
        lines = fh.read().decode("utf-8", "replace").splitlines()
    return any('"NLU model version switched"' in x and f'"model_version": "{name}"' in x for x in lines)


@pytest.mark.slow
async def test_a_promotion_while_messages_flow_loses_and_duplicates_nothing(product, pipeline_models, check_dir):
    """The shared product's NLU worker serves its models folder's current version, checked every 0.5 s
    (conftest.product): a sharper version is promoted while four chats write, and rolled back after."""
    from shopbot.store import ConversationStore

    from .test_pipeline import HELPED, Chat, wait_handled

    url, redis_url = product["url"], product["redis_url"]
    models = Path(product["env"]["SHOPBOT_MODELS_DIR"])
    v1 = versions.current_name(models)  # what the product serves now
    sharper(link_version(pipeline_models, models / "versions" / "v2"))
    nlu_log = product["workers"][0].log
    log_from = nlu_log.stat().st_size
    store = ConversationStore.from_url(redis_url)
    try:
        async with aiohttp.ClientSession() as http:
            chats = [await Chat(http, url).open() for _ in range(4)]
            sent: list[list[tuple[str, str]]] = [[] for _ in chats]  # (phase, order number) per chat
            phase = "before"
            numbers = iter(range(10001, 20000))

            last: list[str] = ["" for _ in chats]  # each chat's newest message id

            async def say(i: int) -> None:
                n = str(next(numbers))
                sent[i].append((phase, n))
                last[i] = (await chats[i].say(f"where is my order {n}"))["message_id"]

            async def flow(until: asyncio.Future) -> None:
                while not until.done():
                    await asyncio.gather(*(say(i) for i in range(len(chats))))
                    await asyncio.sleep(0.4)

            await asyncio.gather(*(say(i) for i in range(len(chats))))
            phase = "during"
            promotion = asyncio.ensure_future(
                asyncio.to_thread(
                    run_cli, "nlu.promote", "v2", "--models", str(models), "--check-dir", str(check_dir), timeout=180
                )
            )
            await flow(promotion)
            done = promotion.result()
            assert done.returncode == 0, done.stdout + done.stderr
            assert versions.current_name(models) == "v2"
            phase = "switching"  # until a message is annotated by v2

            switched = asyncio.get_running_loop().create_future()

            async def watch() -> None:
                deadline = time.monotonic() + 60
                while (store.annotation(chats[0].cid, last[0]) or {}).get("model_version") != "v2":
                    assert time.monotonic() < deadline, nlu_log.read_text()[-3000:]
                    await asyncio.sleep(0.2)
                switched.set_result(True)

            await asyncio.gather(flow(switched), watch())
            phase = "after"
            for _ in range(3):
                await asyncio.gather(*(say(i) for i in range(len(chats))))
                await asyncio.sleep(0.3)

            read_by: dict[str, list[tuple[str, float]]] = {}
            for chat, mine in zip(chats, sent, strict=True):
                await asyncio.to_thread(wait_handled, redis_url, chat.cid, 90)
                history = await chat.history()
                asked = [m["text"].split()[-1] for m in history if m["from"] == "shopper"]
                replies = [m["text"] for m in history if m["from"] == "bot" and m["text"] != HELPED]
                assert asked == [n for _, n in mine]  # each message recorded once, in order
                assert [next(n for n in asked if n in r) for r in replies] == asked  # and answered once, in order
                anns = [store.annotation(chat.cid, m["id"]) for m in history if m["from"] == "shopper"]
                got = [(when, a["model_version"]) for (when, _), a in zip(mine, anns, strict=True)]
                first_v2 = next((i for i, (_, v) in enumerate(got) if v == "v2"), len(got))
                # Batches run side by side on the worker's threads: only while it switches may a message be
                # read by v1 after one read by v2 (docs/nlu.md: model versions); never before or after.
                assert {w for w, v in got[first_v2:] if v == v1} <= {"during", "switching"}, got
                for (when, _), a in zip(mine, anns, strict=True):
                    read_by.setdefault(when, []).append((a["model_version"], a["intent_confidence"]))
                await chat.close()
        assert {v for v, _ in read_by["before"]} == {v1}
        assert len(read_by["during"]) >= 8 and {v for v, _ in read_by["after"]} == {"v2"}
        before = [c for v, c in read_by["before"] + read_by["during"] if v == v1]
        after = [c for v, c in read_by["after"]]
        assert sum(after) / len(after) > sum(before) / len(before)  # v2 is the sharper model: it really serves
        assert switched_to(nlu_log, "v2", log_from)
    finally:
        # The tests after this one get the product as it was: v1 current again, and served.
        if versions.current_name(models) != v1:
            log_from = nlu_log.stat().st_size
            assert promote(["--rollback", "--models", str(models)]) == 0
            assert versions.current_name(models) == v1
            deadline = time.monotonic() + 60
            while not switched_to(nlu_log, v1, log_from):
                assert time.monotonic() < deadline, nlu_log.read_text()[-3000:]
                await asyncio.sleep(0.2)
