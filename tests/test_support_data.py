"""Knowledge-base, questions and labelled-data readers: formats, encodings and clear errors (no model)."""
import json

import pandas as pd
import pytest

from lepton_apps.errors import ConfigError, DataError
from lepton_apps.support.config import SupportConfig
from lepton_apps.support.data import kb_texts, read_kb, read_labelled, read_questions
from lepton_apps.support.demo import write_demo_data

CSV = "id,question,answer,paraphrases,category\nf1,How do I pay?,Use the app.,pay bill|make a payment,pay\nf2,Card lost?,Freeze it.,,cards\n"


def test_csv_kb_with_pipe_separated_paraphrases(tmp_path):
    p = tmp_path / "kb.csv"
    p.write_text(CSV, encoding="utf-8")
    kb = read_kb(p)
    assert kb["id"].tolist() == ["f1", "f2"]
    assert kb.loc[0, "paraphrases"] == ["pay bill", "make a payment"]
    assert kb.loc[1, "paraphrases"] == []
    texts, owner = kb_texts(kb)
    assert texts == ["How do I pay?", "pay bill", "make a payment", "Card lost?"] and owner == [0, 0, 0, 1]


def test_json_records_and_jsonl_read_the_same(tmp_path):
    rows = [{"id": 1, "question": "q one", "answer": "a", "paraphrases": ["p", "  "]},
            {"id": 2, "question": "q two", "answer": "b"}]
    (tmp_path / "kb.json").write_text(json.dumps({"records": rows}))
    (tmp_path / "kb.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    a, b = read_kb(tmp_path / "kb.json"), read_kb(tmp_path / "kb.jsonl")
    assert a["id"].tolist() == b["id"].tolist() == ["1", "2"]
    assert a.loc[0, "paraphrases"] == ["p"]


@pytest.mark.parametrize("text, message", [
    ("id,question\nf1,q\n", "lacks the column(s) answer"),
    ("id,question,answer\nf1,q,\nf2,q2,ok\n", "empty 'answer' (row(s) 1)"),
    ("id,question,answer\nf1,q,a\nf1,q2,b\n", "duplicate FAQ id(s): f1"),
    ("id,question,answer\n", "has no entries"),
])
def test_kb_validation_errors_name_the_problem(tmp_path, text, message):
    p = tmp_path / "kb.csv"
    p.write_text(text)
    with pytest.raises(DataError) as err:
        read_kb(p)
    assert message in str(err.value)
    assert "Fix:" in str(err.value) and str(p) in str(err.value)


def test_non_utf8_files_are_decoded_when_the_encoding_is_detectable(tmp_path):
    text = "id,question,answer\nf1,Où est ma carte bancaire ?,Elle arrive bientôt, après vérification.\n".replace(
        "bientôt, après", "bientôt après")
    (tmp_path / "latin.csv").write_bytes(text.encode("cp1252"))
    (tmp_path / "utf16.csv").write_bytes(text.encode("utf-16"))
    for name in ("latin.csv", "utf16.csv"):
        kb = read_kb(tmp_path / name)
        assert kb.loc[0, "question"] == "Où est ma carte bancaire ?"


def test_binary_file_is_a_clear_error(tmp_path):
    p = tmp_path / "kb.csv"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\xff\xfe\xfd")
    with pytest.raises(DataError, match="binary"):
        read_kb(p)


def test_unsupported_format_and_missing_file(tmp_path):
    (tmp_path / "kb.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported knowledge base format '.xlsx'"):
        read_kb(tmp_path / "kb.xlsx")
    with pytest.raises(DataError, match="not found"):
        read_kb(tmp_path / "nope.csv")


def test_invalid_json_and_jsonl_lines_are_located(tmp_path):
    (tmp_path / "kb.json").write_text('[{"id": 1,]')
    with pytest.raises(DataError, match="invalid JSON"):
        read_kb(tmp_path / "kb.json")
    (tmp_path / "kb.jsonl").write_text('{"id": 1, "question": "q", "answer": "a"}\n{oops\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        read_kb(tmp_path / "kb.jsonl")


def test_questions_reject_unknown_faq_ids_and_keep_out_of_scope(tmp_path):
    q = pd.DataFrame({"question": ["a", "b", "  "], "faq_id": ["f1", "", "f1"]})
    out = read_questions(q, kb_ids={"f1"})
    assert out["faq_id"].tolist() == ["f1", ""]
    with pytest.raises(DataError, match="not in the knowledge base: zz"):
        read_questions(pd.DataFrame({"question": ["a"], "faq_id": ["zz"]}), kb_ids={"f1"})


def test_labelled_data_needs_two_labels():
    with pytest.raises(DataError, match="at least two different labels"):
        read_labelled(pd.DataFrame({"text": ["a", "b"], "label": ["x", "x"]}), "label", what="sentiment data")


def test_demo_data_is_complete_and_consistent(tmp_path):
    paths = write_demo_data(tmp_path)
    kb = read_kb(paths["kb"])
    assert 60 <= len(kb) <= 100
    assert kb["paraphrases"].map(len).min() >= 3
    q = read_questions(paths["questions"], kb_ids=set(kb["id"]))
    assert (q["faq_id"] == "").sum() >= 30 and set(q["split"]) == {"val", "test"}
    assert set(q.loc[q["faq_id"] != "", "faq_id"]) == set(kb["id"])   # every FAQ is asked about
    s = read_labelled(paths["sentiment"], "label", what="sentiment")
    assert set(s["label"]) == {"neutral", "negative", "urgent"} and (s["split"] == "test").sum() >= 30
    assert len(pd.read_csv(paths["questions_csv"])) == len(q)


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown key 'encodr'"):
        SupportConfig.from_dict({"kb": "x.csv", "encodr": "m"})
    with pytest.raises(ConfigError, match="target_precision"):
        SupportConfig.from_dict({"kb": "x.csv", "target_precision": 1.5})


def test_package_import_stays_light():
    import subprocess
    import sys

    code = "import sys, lepton_apps.support as s; assert s.DOMAIN.build_demo; print(any(m.startswith(('torch', 'transformers')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
