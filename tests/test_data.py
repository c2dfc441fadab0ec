"""Training data validation: every bad file gets an error that says what and where."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from nlu.data import DataError, Example, check_label_counts, read_csv, stratified_split

from .conftest import run_cli, run_main

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_csv(tmp_path / "nope.csv")


def test_missing_columns_are_named(tmp_path):
    f = write(tmp_path / "a.csv", "sentence,intent\nhello,greet\n")
    with pytest.raises(DataError, match="missing text, label"):
        read_csv(f)


def test_empty_rows_are_reported_with_line_numbers(tmp_path):
    f = write(tmp_path / "a.csv", "text,label\nhello,greet\n,greet\nbye,\nok,fine\n")
    with pytest.raises(DataError, match=r"2 row\(s\) .* line\(s\) 3, 4"):
        read_csv(f)


def test_not_utf8(tmp_path):
    f = write(tmp_path / "a.csv", "text,label\n我的快递,track\n", encoding="gbk")
    with pytest.raises(DataError, match="not UTF-8"):
        read_csv(f)


def test_reads_rows_flags_and_checksum(tmp_path):
    f = write(tmp_path / "a.csv", "text,label,flags\n where is it ,track,BZ\n")
    examples, info = read_csv(f)
    assert examples == [Example("where is it", "track", "a.csv", "BZ")]
    assert info["rows"] == 1 and len(info["sha256"]) == 64


def test_label_with_too_few_examples():
    rows = [Example(f"t{i}", "big", "f") for i in range(10)] + [Example("x", "rare", "f"), Example("y", "rare", "f")]
    with pytest.raises(DataError, match=r"'rare' \(2\)"):
        check_label_counts(rows)
    with pytest.raises(DataError, match="at least 2 labels"):
        check_label_counts([Example("a", "only", "f")] * 10)


def test_stratified_split_is_disjoint_and_keeps_proportions():
    rows = [Example(f"a{i}", "a", "f1") for i in range(100)] + [Example(f"b{i}", "b", "f1") for i in range(50)]
    rows += [Example(f"c{i}", "a", "f2") for i in range(40)]
    train, val = stratified_split(rows, 0.1, seed=1)
    assert not {e.text for e in train} & {e.text for e in val}
    assert len(train) + len(val) == len(rows)
    counts = Counter((e.source, e.label) for e in val)
    assert counts == {("f1", "a"): 10, ("f1", "b"): 5, ("f2", "a"): 4}
    assert stratified_split(rows, 0.1, seed=1) == (train, val)  # reproducible


def test_train_cli_errors_are_clear(tmp_path):
    bad = write(tmp_path / "bad.csv", "sentence,intent\nhello,greet\n")
    r = run_cli("nlu.train", "--task", "intent", "--data", str(bad), "--out", str(tmp_path / "m"))  # as a user runs it
    assert r.returncode == 2
    assert "nlu.train: error:" in r.stderr and "'text' and 'label' columns" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_main("nlu.train", "--task", "intent", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and "no such file" in r.stderr
    few = write(tmp_path / "few.csv", "text,label\n" + "".join(f"hi {i},greet\n" for i in range(6)) + "bye,leave\n")
    r = run_main("nlu.train", "--task", "intent", "--data", str(few), "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and "'leave' (1)" in r.stderr
    ok = write(tmp_path / "ok.csv", "text,label\n" + "".join(f"hi {i},greet\nbye {i},leave\n" for i in range(6)))
    r = run_main(
        "nlu.train",
        "--task",
        "intent",
        "--data",
        str(ok),
        "--out",
        str(tmp_path / "m"),
        "--base-model",
        "no-such-org/no-such-model",
    )
    assert r.returncode == 2 and "unknown base model 'no-such-org/no-such-model'" in r.stderr
    assert not (tmp_path / "m").exists()


def test_oversample_must_name_a_data_file(tmp_path):
    ok = write(tmp_path / "ok.csv", "text,label\n" + "".join(f"hi {i},greet\nbye {i},leave\n" for i in range(6)))
    r = run_main(
        "nlu.train", "--task", "intent", "--data", str(ok), "--out", str(tmp_path / "m"), "--oversample", "other.csv=3"
    )
    assert r.returncode == 2 and "--oversample takes NAME=K" in r.stderr and "ok.csv" in r.stderr
    r = run_main(
        "nlu.train", "--task", "intent", "--data", str(ok), "--out", str(tmp_path / "m"), "--oversample", "ok.csv=x"
    )
    assert r.returncode == 2 and "NAME=K" in r.stderr
    assert not (tmp_path / "m").exists()


def test_typo_copies_keep_labels_and_skip_chinese():
    import random

    from nlu.augment import add_typo_copies, misspell

    rows = [Example("please cancel my order now", "cancel_order", "f")] * 50 + [
        Example("我的快递到哪了", "track_order", "z")
    ]
    out = add_typo_copies(rows, 1.0, seed=3)
    copies = out[len(rows) :]
    assert len(copies) == 50 and all(c.label == "cancel_order" and c.text != rows[0].text for c in copies)
    assert len({c.text for c in copies}) > 10  # varied slips, not one repeated copy
    assert misspell("我的快递到哪了", random.Random(0)) is None
    assert add_typo_copies(rows, 0.0, seed=3) == rows
