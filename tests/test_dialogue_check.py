"""The conversation suite's command (python -m dialogue.check) and the facts check (python -m dialogue.facts).

The command runs with the pipeline's small models on the conversations tagged
``smoke``; the benchmark (``python -m dialogue.check tests/conversations --models
models``, and ``bench/conversations``, a set written later to measure) runs all
of them on the default models.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dialogue import load_policy
from dialogue.check import ConversationFileError, load_conversations
from dialogue.facts import check_shop
from dialogue.policy import DEFAULT_FILE

from .conftest import run_main

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tests" / "conversations"


def run_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dialogue.check", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_suite_is_well_formed_and_covers_both_languages():
    conversations = load_conversations(SUITE)
    assert len(conversations) >= 150
    assert {c.lang for c in conversations} == {"en", "zh"}
    smoke = load_conversations(SUITE, tag="smoke")
    assert 10 <= len(smoke) < len(conversations) and {c.lang for c in smoke} == {"en", "zh"}
    measuring = load_conversations(ROOT / "bench" / "conversations")
    assert len(measuring) >= 80 and {c.lang for c in measuring} == {"en", "zh"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("- name: x\n  steps: []\n", "needs a name and a list of steps"),
        ("- name: x\n  steps:\n    - say: hi\n      acton: small_talk:greeting\n", "unknown key(s) acton"),
        ("- name: x\n  steps:\n    - event: lunch\n", "unknown event 'lunch'"),
        ("- name: x\n  lang: fr\n  steps:\n    - say: hi\n", "lang must be en or zh"),
        ("- name: x\n  steps:\n    - say: a\n- name: x\n  steps:\n    - say: b\n", "used twice"),
        ("name: [unclosed\n", "cannot be read as YAML"),
    ],
)
def test_a_bad_conversation_file_says_where(tmp_path, body, message):
    (tmp_path / "bad.yaml").write_text(body, encoding="utf-8")
    with pytest.raises(ConversationFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_conversations(tmp_path)


def test_a_bad_file_exits_2_before_any_model_is_loaded(tmp_path):
    (tmp_path / "bad.yaml").write_text("- name: x\n  steps:\n    - sya: hi\n", encoding="utf-8")
    done = run_check(str(tmp_path), "--models", str(tmp_path / "none"))
    assert done.returncode == 2 and "a step has either `say` or `event`" in done.stderr


@pytest.mark.slow
def test_the_smoke_conversations_run_on_real_models_and_a_failure_shows_its_diff(pipeline_models, tmp_path):
    for f in SUITE.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    wrong = [
        {
            "name": "deliberately wrong",
            "lang": "en",
            "tags": ["smoke"],
            "steps": [{"say": "hi", "action": "faq:express", "contains": ["14.90"], "handoff": "requested"}],
        }
    ]
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(wrong), encoding="utf-8")
    # In this process (its main(argv)): the bad-file test above runs the command as a real process.
    done = run_main("dialogue.check", str(tmp_path), "--models", str(pipeline_models), "--tag", "smoke")
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["total"] == len(load_conversations(SUITE, tag="smoke")) + 1
    assert "deliberately wrong" in summary["failures"]
    out = done.stdout
    assert "FAIL  deliberately wrong" in out
    assert "action: expected faq:express, got small_talk:greeting" in out
    assert "reply lacks '14.90'" in out and "hand-off: expected requested, got none" in out
    # The small test models are not the defaults: most of the smoke subset, not all, is the bar here;
    # the benchmark holds the default models to the whole suite.
    others = summary["total"] - 1
    assert (summary["passed"]) / others >= 0.8, out[-4000:]


def test_the_shipped_policies_state_no_fact_the_demo_shop_lacks(demo_shop):
    assert check_shop(load_policy(), demo_shop) == []


def test_a_policy_text_with_its_own_facts_is_found(tmp_path, demo_shop):
    raw = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    raw["intents"]["delivery_options"]["en"] = "Standard delivery takes 3-5 working days, express 1-2."
    raw["intents"]["contact_human_agent"]["zh"] = "客服工作时间为工作日9:00-18:00。"
    raw["intents"]["check_payment_methods"]["faq"] = "payment-options"
    raw["messages"]["too_late"]["en"] = "Too late for {order_number}. {faq[returns-window]}"
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    found = [str(f) for f in check_shop(load_policy(path), demo_shop)]
    assert "intents.delivery_options.en: states '3-5', which is in none of the shop's FAQ answers or prices" in found
    assert any(f.startswith("intents.contact_human_agent.zh: states '9:00-18:00'") for f in found)
    assert "intents.check_payment_methods.faq: FAQ entry 'payment-options' is not in the shop's FAQ" in found
    assert any(f.startswith("messages.too_late.en: quotes FAQ entry 'returns-window'") for f in found)
    # "1-2" is in the shop's data (orders ship within 1-2 working days): not a finding of this check.
    assert len(found) == 4, found
