"""The trunk/top split computes exactly what the plain encoder computes."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from nlu.base_models import resolve_base_model
from nlu.model import TextClassifier, mean_pool, shared_depth


@pytest.fixture(scope="module")
def minilm():
    path = resolve_base_model("minilm")
    return AutoTokenizer.from_pretrained(path), path


@pytest.mark.parametrize("freeze", [0, 3, 6])
def test_split_forward_equals_plain_encoder(minilm, freeze):
    tok, path = minilm
    encoder = AutoModel.from_pretrained(path, add_pooling_layer=False)
    model = TextClassifier(encoder, num_labels=5, freeze_layers=freeze).eval()
    batch = tok(
        ["where is my order", "a much longer message, with padding for the other one"],
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        plain = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        expected = model.head(mean_pool(plain, batch["attention_mask"]))
        got = model(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_frozen_parts_get_no_gradient_and_share_a_fingerprint(minilm):
    _, path = minilm
    a = TextClassifier(AutoModel.from_pretrained(path, add_pooling_layer=False), 3, freeze_layers=4)
    b = TextClassifier(AutoModel.from_pretrained(path, add_pooling_layer=False), 7, freeze_layers=4)
    trainable = {n for n, p in a.named_parameters() if p.requires_grad}
    assert not any(n.startswith("encoder.embeddings") for n in trainable)
    assert not any(n.startswith(f"encoder.encoder.layer.{i}.") for i in range(4) for n in trainable)
    assert any(n.startswith("encoder.encoder.layer.5.") for n in trainable) and "head.weight" in trainable
    assert a.trunk_fingerprint() == b.trunk_fingerprint()
    with torch.no_grad():
        b.encoder.encoder.layer[0].output.dense.bias.add_(1e-3)
    assert a.trunk_fingerprint() != b.trunk_fingerprint()
    with pytest.raises(ValueError, match="between 0 and 6"):
        TextClassifier(AutoModel.from_pretrained(path, add_pooling_layer=False), 3, freeze_layers=7)


def test_shared_depth_counts_the_bottom_layers_held_bit_for_bit(minilm):
    _, path = minilm
    fresh = lambda: AutoModel.from_pretrained(path, add_pooling_layer=False)  # noqa: E731
    a, b = TextClassifier(fresh(), 3, freeze_layers=4), TextClassifier(fresh(), 7, freeze_layers=4)
    assert shared_depth(a, b) == 6  # nothing trained yet: the whole base is the same
    with torch.no_grad():
        b.encoder.encoder.layer[4].attention.self.query.weight.mul_(1.01)  # fine-tuned above the trunk
    assert shared_depth(a, b) == 4
    # One encoder object under two heads (a joint training): every layer.
    joint = TextClassifier(a.encoder, 5, freeze_layers=4)
    assert shared_depth(a, joint) == 6
    with torch.no_grad():
        b.encoder.embeddings.word_embeddings.weight[0, 0] += 1
    assert shared_depth(a, b) is None
    # A shallower copy of the base (``--layers``) shares what it has.
    short = fresh()
    short.encoder.layer = short.encoder.layer[:3]
    assert shared_depth(a, TextClassifier(short, 3, freeze_layers=2)) == 3
    # split at any depth computes what the plain forward computes
    ids = torch.tensor([[0, 2023, 2003, 1037, 3231, 2]])
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        a.eval()
        torch.testing.assert_close(a.top(a.trunk(ids, mask, 5), mask, 5), a(ids, mask), atol=1e-5, rtol=1e-4)


def test_head_tail_truncation_keeps_both_ends_of_a_long_text(minilm):
    from nlu.model import encode

    tok, _ = minilm
    long = "first words " + " ".join(f"w{i}" for i in range(200)) + " final verdict terrible"
    short = "where is my order"
    head = encode(tok, [long, short], 32, "head")
    both = encode(tok, [long, short], 32, "head_tail")
    full = tok(long, verbose=False)["input_ids"]
    assert len(full) > 32 and [len(x) for x in both] == [32, len(tok(short)["input_ids"])]
    assert both[0] == full[:8] + full[-24:]  # a quarter from the start, the rest from the end, specials kept
    assert head[0] == full[:31] + [tok.sep_token_id] and "verdict terrible" in tok.decode(both[0])
    assert both[1] == head[1]  # a text that fits is not touched
    with pytest.raises(ValueError, match="truncation must be one of head, head_tail"):
        encode(tok, [short], 32, "middle")
