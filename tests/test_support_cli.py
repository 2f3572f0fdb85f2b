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
    assert df["qid"].tolist() == ["a", "b", "c", "d"]
    assert df["error"].tolist()[1] == "empty question" and df["error"].drop(index=1).isna().all()
    assert df["faq_id"].iloc[0] == "order-card" and df["handoff"].tolist() == [False, True, True, True]
    code, out, _ = run(capsys, "support", "evaluate", str(demo_bundle), str(demo_bundle.parent / "demo_questions.json"),
                       "--out", str(tmp_path / "eval"))
    assert code == 0
    metrics = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert metrics["n_questions"] == 172 and metrics["top1_accuracy"] > 0.85
    assert (tmp_path / "eval" / "coverage_curve.png").stat().st_size > 10_000
    assert (tmp_path / "eval" / "tradeoff_curve.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "eval" / "details.csv")) == 172
    # answered-correct and hand-off recall at the bundle's threshold, then the whole trade-off curve
    assert (f"answered-correct {metrics['answered_correct']:.3f}, hand-off recall {metrics['handoff_recall']:.3f}"
            in out)
    assert "calibrated on your 20 out-of-scope validation questions and the general out-of-scope set" in out
    table = out[out.index("trade-off as the threshold moves"):].splitlines()
    assert table[1].split() == ["threshold", "handoff_recall", "answered_correct", "coverage"] and len(table) >= 12
    curve = pd.read_csv(tmp_path / "eval" / "tradeoff_curve.csv")
    assert curve["handoff_recall"].is_monotonic_increasing and curve["answered_correct"].is_monotonic_decreasing
    assert curve["handoff_recall"].iloc[-1] == 1.0 and curve["answered_correct"].iloc[-1] == 0.0
    details = pd.read_csv(tmp_path / "eval" / "details.csv")
    at = curve[curve["threshold"] >= json.loads((demo_bundle / "retrieval.json").read_text())["settings"]["threshold"]]
    assert at["handoff_recall"].iloc[0] == metrics["handoff_recall"]    # the curve agrees with the decisions
    assert at["answered_correct"].iloc[0] == metrics["answered_correct"]
    assert (details["faq_id"].isna() | (details["faq_id"] == "")).sum() == metrics["n_out_of_scope"]


def test_batch_csv_keeps_blank_and_whitespace_only_questions_as_handoff_rows(capsys, demo_bundle, tmp_path):
    src = tmp_path / "q.csv"
    src.write_text("question\nhow do I order a new card\n\n   \nwho won the football\n\t\nmy card was stolen\n")
    out_file = tmp_path / "answers.csv"
    code, out, _ = run(capsys, "support", "answer", str(demo_bundle), str(src), "--out", str(out_file))
    assert code == 0 and "(6 rows" in out
    df = pd.read_csv(out_file)
    assert len(df) == 6                                   # one output row per input line, blank ones included
    assert df["handoff"].tolist() == [False, True, True, True, True, False]
    assert df["handoff_reason"].iloc[[1, 2, 4]].tolist() == ["empty question"] * 3
    assert df["faq_id"].iloc[0] == "order-card" and df["faq_id"].iloc[5] == "lost-card"


def test_answer_without_input_is_a_one_line_error(capsys, demo_bundle):
    code, out, err = run(capsys, "support", "answer", str(demo_bundle))
    assert code == 2 and "nothing to answer" in (out + err)
