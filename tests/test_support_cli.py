"""``lepton-apps support …`` verbs on the demo bundle: check, demo-data, answer (one / batch), evaluate."""
import json

import pandas as pd
from test_support_fixtures import demo_build, demo_bundle  # noqa: F401

from lepton_apps.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_verb_has_an_example(capsys):
    for verb in ("train", "evaluate", "answer", "predict", "check", "demo-data"):
        code, out, _ = run(capsys, "support", verb, "--help")
        assert code == 0 and "Example: lepton-apps support" in out, verb


def test_check_reports_a_good_kb_and_fails_cleanly_on_a_bad_one(capsys, tmp_path):
    code, out, _ = run(capsys, "support", "demo-data", str(tmp_path / "demo"))
    assert code == 0 and "demo_kb.json" in out
    code, out, _ = run(capsys, "support", "check", str(tmp_path / "demo" / "demo_kb.json"),
                       "--questions", str(tmp_path / "demo" / "demo_questions.json"))
    assert code == 0 and "OK: 66 FAQ entries" in out and "40 out of scope" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("id,question,answer\na,q,x\na,q2,y\n")
    code, out, err = run(capsys, "support", "check", str(bad))
    assert code == 2 and "duplicate FAQ id(s): a" in (out + err) and "Traceback" not in (out + err)


def test_answer_one_question_prints_json(capsys, demo_bundle):
    code, out, _ = run(capsys, "support", "answer", str(demo_bundle), "-q", "my card was stolen")
    assert code == 0
    reply = json.loads(out[out.index("{"):])
    assert reply["faq_id"] == "lost-card" and reply["handoff"] is False and len(reply["sources"]) == 5


def test_batch_answer_writes_one_row_per_question_and_evaluate_writes_plots(capsys, demo_bundle, tmp_path):
    questions = pd.DataFrame({"qid": ["a", "b", "c", "d"],
                              "question": ["how do I order a new card", "", "who won the football", "😀 ✨"]})
    questions.to_csv(tmp_path / "q.csv", index=False)
    out_file = tmp_path / "answers.parquet"
    code, _, _ = run(capsys, "support", "answer", str(demo_bundle), str(tmp_path / "q.csv"), "--out", str(out_file),
                     "--id-column", "qid")
    assert code == 0
    df = pd.read_parquet(out_file)
    assert df["qid"].tolist() == ["a", "b", "c", "d"] and df["error"].isna().all()
    assert df["faq_id"].iloc[0] == "order-card" and df["handoff"].tolist() == [False, True, True, True]
    code, out, _ = run(capsys, "support", "evaluate", str(demo_bundle), str(demo_bundle.parent / "demo_questions.json"),
                       "--out", str(tmp_path / "eval"))
    assert code == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_questions"] == 172 and metrics["top1_accuracy"] > 0.85
    assert (tmp_path / "eval" / "coverage_curve.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "eval" / "details.csv")) == 172


def test_answer_without_input_is_a_one_line_error(capsys, demo_bundle):
    code, out, err = run(capsys, "support", "answer", str(demo_bundle))
    assert code == 2 and "nothing to answer" in (out + err)
