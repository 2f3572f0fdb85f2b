"""The support page under Streamlit's AppTest: a chat turn, hand-off, safe rendering, feedback, KB validation,
and the page in Chinese (language switch, a Chinese question answered from the Chinese KB)."""
import json
import re
import shutil
import string

import pytest
from streamlit.testing.v1 import AppTest
from test_support_fixtures import demo_build, demo_bundle, zh_build  # noqa: F401

from lepton_apps.registry import Registry
from lepton_apps.support.feedback import FeedbackStore
from lepton_apps.support.page_texts import TEXTS

PAGE = "apps/support/page.py"
TIMEOUT = 180


@pytest.fixture(autouse=True)
def _feedback_in_the_test_home(monkeypatch):
    """Ratings go to $LEPTON_HOME/lepton.db of the test, never to a database or old file named outside."""
    monkeypatch.delenv("LEPTON_DB_URL", raising=False)
    monkeypatch.delenv("LEPTON_SUPPORT_FEEDBACK", raising=False)


@pytest.fixture
def page(demo_bundle):
    Registry().register(demo_bundle, "support-demo-test")
    from conftest import ROOT

    return AppTest.from_file(str(ROOT / PAGE), default_timeout=TIMEOUT).run()


def _errors(at):
    return [e.value for e in at.exception] + [e.value for e in at.error]


def test_chat_turn_shows_answer_faq_confidence_sources_and_stores_feedback(page, tmp_path):
    at = page
    assert not _errors(at)
    at.chat_input[0].set_value("my card was stolen").run()
    assert not _errors(at)
    texts = [t.value for t in at.text]
    assert texts[0] == "my card was stolen" and texts[1].startswith("Freeze the card immediately")
    captions = [c.value for c in at.caption]
    assert any(re.fullmatch(r"Matched FAQ: lost-card · confidence (0\.[5-9]\d|1\.00)", c) for c in captions)
    assert any("intent: cards → Cards team" in c for c in captions)
    assert at.expander[0].label == "Sources (5)"
    at.button(key="support_fb_0_1").click().run()
    rows = FeedbackStore().frame()   # the service database, $LEPTON_HOME/lepton.db
    assert rows[["question", "faq_id", "rating"]].values.tolist() == [["my card was stolen", "lost-card", 1]]
    assert rows["model_version"].iloc[0].startswith("support-demo-test@") and rows["request_id"].isna().all()
    assert (tmp_path / "lepton_home" / "lepton.db").is_file()
    assert any("Thanks for the feedback" in c.value for c in at.caption)


def test_feedback_thumbs_are_material_icons_not_emoji(page):
    """Emoji render as empty boxes in browsers without an emoji font (Debian Chromium): use Material icons."""
    at = page
    at.chat_input[0].set_value("my card was stolen").run()
    labels = {b.key: b.label for b in at.button if b.key and b.key.startswith("support_fb_")}
    assert labels == {"support_fb_0_1": ":material/thumb_up:", "support_fb_0_-1": ":material/thumb_down:"}
    emoji = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")
    at.button(key="support_fb_0_-1").click().run()
    shown = [b.label for b in at.button] + [c.value for c in at.caption] + [m.value for m in at.markdown]
    assert not [s for s in shown if emoji.search(s)]
    assert any(c.value == "Thanks for the feedback :material/thumb_down:" for c in at.caption)


def test_chat_still_answers_when_the_feedback_database_is_down(demo_bundle, monkeypatch):
    from conftest import ROOT, free_port

    Registry().register(demo_bundle, "support-demo-test")
    monkeypatch.setenv("LEPTON_DB_URL", f"postgresql+psycopg://postgres:s3cr3t@127.0.0.1:{free_port()}/nowhere")
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=TIMEOUT).run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Could not open the feedback database: cannot prepare the database")
    assert "s3cr3t" not in errors[0] and not at.exception
    at.chat_input[0].set_value("my card was stolen").run()
    assert at.text[1].value.startswith("Freeze the card immediately")
    assert not [b for b in at.button if b.key and b.key.startswith("support_fb_")]
    assert any(c.value.startswith("Rating is off: the feedback database could not be opened") for c in at.caption)


def test_handoff_and_html_are_shown_safely(page):
    at = page
    evil = "<img src=x onerror=alert(1)> '; DROP TABLE feedback; -- what's the weather"
    at.chat_input[0].set_value(evil).run()
    assert not _errors(at)
    assert [w.value for w in at.warning] == ["Connecting you to a human agent…"]
    assert at.text[0].value == evil                       # shown verbatim as text, not rendered as HTML
    assert not any("<img" in m.value for m in at.markdown)
    assert any(c.value.startswith("Hand-off reason: low confidence") for c in at.caption)


def test_kb_tab_explains_the_upload_format(page):
    at = page
    assert at.tabs[2].label == "Knowledge base"
    assert any("Upload a knowledge base" in m.value for m in at.tabs[2].markdown)


def test_page_without_models_explains_how_to_get_one(tmp_path):
    from conftest import ROOT

    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=TIMEOUT).run()
    assert not _errors(at)
    assert any("lepton-apps demo --domain support" in i.value for i in at.info)
    db = (tmp_path / "lepton_home" / "lepton.db").resolve()
    assert [c.value for c in at.sidebar.caption] == [f"Feedback database: `sqlite:///{db}` (created with the first rating)"]
    assert not db.exists()   # opening the page creates no database; the first rating does


def test_page_imports_the_old_feedback_file_once_and_shows_it(tmp_path):
    from conftest import ROOT
    from test_feedback_store import write_legacy

    legacy = write_legacy(tmp_path / "lepton_home" / "support_feedback.sqlite")
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=TIMEOUT).run()
    assert not _errors(at)
    assert [i.value for i in at.tabs[1].info] == [f"3 rating(s) were imported from the old feedback file `{legacy}`."]
    assert any(c.value.startswith("3 rating(s) in `sqlite:///") for c in at.tabs[1].caption)
    assert at.tabs[1].dataframe[0].value["question"].tolist()[-1] == "my card was stolen"
    assert not legacy.exists() and legacy.with_name(legacy.name + ".imported").is_file()
    assert len(FeedbackStore().frame()) == 3


def test_damaged_bundle_is_an_error_line_not_a_traceback(demo_bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(demo_bundle, broken)
    (broken / "retrieval.json").write_text("{}")
    from conftest import ROOT

    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=TIMEOUT)
    at.session_state["support_bundle_path"] = str(broken)
    at.run()
    assert not at.exception
    assert any("Could not load the model" in e.value and "truncated or replaced" in e.value for e in at.error)


def test_kb_tab_validates_an_upload_and_rebuilds_a_registered_bundle(page):
    at = page
    rows = ["id,question,answer,paraphrases",
            "hours,When are you open?,We are open 9am to 5pm on weekdays.,what are your opening hours|when can I visit",
            "refund,How do I get a refund?,Reply to your receipt email within 30 days.,can I get my money back|refund policy",
            "ship,How long does shipping take?,Orders arrive in 3 to 5 working days.,when will my order arrive|delivery time"]
    at.file_uploader(key="support_kb_upload").set_value([("shop.csv", "\n".join(rows).encode(), "text/csv")]).run()
    assert not _errors(at)
    assert any(s.value == "Valid: 3 entries, 6 paraphrases." for s in at.success)
    before = {m.name for m in Registry().list("support")}
    at.button(key="support_rebuild").click().run()
    assert not _errors(at)
    new = {m.name for m in Registry().list("support")} - before
    assert len(new) == 1 and next(iter(new)).startswith("support-kb-")
    assert any(s.value.startswith("Registered support-kb-") for s in at.success)


def test_kb_tab_shows_an_invalid_upload_as_a_message(page):
    at = page
    bad = b"id,question,answer\nx,What?,\nx,Again?,Yes\n"   # an empty answer and a duplicate id
    at.file_uploader(key="support_kb_upload").set_value([("bad.csv", bad, "text/csv")]).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and errors[0].startswith("The knowledge base is not valid"), errors
    assert "support_rebuild" not in [b.key for b in at.button]  # nothing to rebuild from an invalid file


# --------------------------------------------------------------------------- the page in Chinese

def _zh_kb_answer(faq_id: str) -> str:
    from conftest import ROOT

    records = json.loads((ROOT / "apps/support/demo_kb_zh.json").read_text(encoding="utf-8"))["records"]
    return next(r["answer"] for r in records if r["id"] == faq_id)


@pytest.fixture
def zh_page(zh_build):
    Registry().register(zh_build[2], "support-zh-test")
    from conftest import ROOT

    return AppTest.from_file(str(ROOT / PAGE), default_timeout=TIMEOUT).run()


def test_page_texts_have_the_same_keys_and_fields_in_both_languages():
    assert set(TEXTS) == {"en", "zh"} and set(TEXTS["en"]) == set(TEXTS["zh"])
    fields = {lang: {k: sorted(f[1] for f in string.Formatter().parse(v) if f[1]) for k, v in texts.items()}
              for lang, texts in TEXTS.items()}
    assert fields["en"] == fields["zh"]
    han = re.compile("[\u4e00-\u9fff]")
    assert not [k for k, v in TEXTS["zh"].items() if not han.search(v) and k != "m_mrr"]


def test_page_opens_in_chinese_for_a_chinese_bundle_and_switches_to_english(zh_page):
    at = zh_page
    assert not _errors(at)
    assert at.radio(key="support_lang").value == "zh"
    assert at.title[0].value == "智能客服"
    assert [t.label for t in at.tabs] == ["对话", "反馈", "知识库", "模型", "审核"]
    assert at.chat_input[0].placeholder.startswith("请输入您的问题")
    assert at.selectbox(key="support_bundle").label == "客服模型"
    at.radio(key="support_lang").set_value("en").run()
    assert not _errors(at)
    assert at.title[0].value == "Support assistant"
    assert [t.label for t in at.tabs] == ["Chat", "Feedback", "Knowledge base", "Model", "Review"]
    assert at.chat_input[0].placeholder.startswith("Ask a question")
    assert at.selectbox(key="support_bundle").value == "support-zh-test"      # the model stays chosen
    at.run()
    assert at.title[0].value == "Support assistant"   # the user's choice sticks; no switch back to the KB's language
    at.chat_input[0].set_value("請問信用卡怎麼掛失").run()
    assert at.text[1].value == _zh_kb_answer("lost-card")   # the KB's answer, not translated
    assert any(c.value.startswith("Matched FAQ: lost-card") for c in at.caption)
    assert any("language: Chinese (zh)" in c.value for c in at.caption)


def test_chinese_question_shows_the_lost_card_answer_its_source_and_language(zh_page):
    at = zh_page
    at.chat_input[0].set_value("請問信用卡怎麼掛失").run()
    assert not _errors(at)
    texts = [t.value for t in at.text]
    assert texts == ["請問信用卡怎麼掛失", _zh_kb_answer("lost-card")]
    captions = [c.value for c in at.caption]
    assert any(re.fullmatch(r"匹配的问题：lost-card · 置信度 (0\.[3-9]\d|1\.00)", c) for c in captions), captions
    assert any("语言：中文 (zh)" in c for c in captions), captions
    assert re.fullmatch(r"来源（\d+）", at.expander[0].label)
    sources = at.expander[0].dataframe[0].value
    assert list(sources.columns) == ["问题编号", "得分", "语义", "关键词", "匹配文本", "标准问题"]
    assert sources["问题编号"].iloc[0] == "lost-card" and sources["标准问题"].iloc[0] == "银行卡丢了怎么办？"
    assert {b.key: b.help for b in at.button if b.key and b.key.startswith("support_fb_")} == {
        "support_fb_0_1": "回答有帮助", "support_fb_0_-1": "没有帮助"}
    assert at.button(key="support_clear").label == "清空对话"


def test_chinese_hand_off_shows_the_bundles_chinese_message_and_a_chinese_reason(zh_page):
    at = zh_page
    at.chat_input[0].set_value("今天北京天气怎么样").run()
    assert not _errors(at)
    assert [w.value for w in at.warning] == ["正在为您转接人工客服…"]
    assert at.text[1].value == "这个问题我不确定能准确回答，正在为您转接人工客服。"
    reasons = [c.value for c in at.caption if c.value.startswith("转人工原因：")]
    low = r"转人工原因：置信度较低（0\.\d\d < 0\.\d\d）：知识库可能没有覆盖这个问题"
    tie = r"转人工原因：问题有歧义：「[\w-]+」和「[\w-]+」的匹配程度几乎相同（\d\.\d{3} 对 \d\.\d{3}）"
    assert len(reasons) == 1 and re.fullmatch(f"{low}|{tie}", reasons[0]), reasons
    shown = [c.value for c in at.caption] + [m.value for m in at.markdown]
    assert not [s for s in shown if re.search(r"low confidence|ambiguous|knowledge base", s)], shown
    at.chat_input[0].set_value("😡😡😡").run()     # no words: the input-problem path, worded in Chinese too
    assert any(c.value == "转人工原因：消息中没有可供检索的文字（例如只有表情或标点）" for c in at.caption)


def test_chinese_escalation_badge_and_sentiment_are_in_chinese(zh_page):
    at = zh_page
    at.chat_input[0].set_value("我的卡刚刚被盗刷了五千块，怎么办，急！").run()
    assert not _errors(at)
    badges = [m.value for m in at.markdown if "red-badge" in m.value]
    assert len(badges) == 1 and re.search(r"需升级处理：客户似乎很着急（升级概率 [01]\.\d\d ≥ 阈值 0\.\d\d）", badges[0]), badges
    assert "P(escalate)" not in badges[0] and "urgent" not in badges[0]
    assert any("情绪：很着急" in c.value for c in at.caption)


# a handoff_detail per hand-off code (the fields Answer.handoff_detail carries for it, predict.HANDOFF_CODES)
SAMPLE_DETAILS = {"empty_question": {}, "binary_data": {}, "unreadable_text": {}, "no_words": {}, "empty_kb": {},
                  "low_confidence": {"confidence": 0.3125, "threshold": 0.52},
                  "ambiguous": {"first": "lost-card", "second": "card-declined", "first_score": 0.61234,
                                "second_score": 0.6011, "margin": 0.02}}


def test_every_handoff_code_has_an_english_and_a_chinese_reason():
    from lepton_apps.support.page_texts import handoff_text
    from lepton_apps.support.predict import HANDOFF_CODES

    assert set(SAMPLE_DETAILS) == set(HANDOFF_CODES), "a new hand-off code needs a sample detail here"
    han = re.compile("[\u4e00-\u9fff]")
    for code, detail in SAMPLE_DETAILS.items():
        reply = {"handoff_code": code, "handoff_detail": detail, "handoff_reason": "ENGLISH REASON"}
        assert f"reason_{code}" in TEXTS["en"] and f"reason_{code}" in TEXTS["zh"]
        en, zh = handoff_text(reply, TEXTS["en"]), handoff_text(reply, TEXTS["zh"])
        assert en != "ENGLISH REASON" and not han.search(en), (code, en)
        assert han.search(zh) and not re.search("[A-Za-z]{4,}", zh.replace("lost-card", "").replace(
            "card-declined", "")), (code, zh)
    assert handoff_text({"handoff_code": "low_confidence", "handoff_detail": SAMPLE_DETAILS["low_confidence"]},
                        TEXTS["zh"]) == "置信度较低（0.31 < 0.52）：知识库可能没有覆盖这个问题"
    assert handoff_text({"handoff_code": "ambiguous", "handoff_detail": SAMPLE_DETAILS["ambiguous"]}, TEXTS["zh"]) == (
        "问题有歧义：「lost-card」和「card-declined」的匹配程度几乎相同（0.612 对 0.601）")


def test_reasons_fall_back_to_the_english_text_for_unknown_codes_and_old_replies():
    from lepton_apps.support.page_texts import escalation_text, handoff_text, sentiment_name

    zh = TEXTS["zh"]
    assert handoff_text({"handoff_code": "policy_block", "handoff_reason": "blocked by policy"}, zh) == "blocked by policy"
    assert handoff_text({"handoff_reason": "low confidence (0.10 < 0.50): probably not covered"}, zh).startswith("low")
    # a detail without the numbers its template names: the English reason rather than a broken sentence
    assert handoff_text({"handoff_code": "low_confidence", "handoff_detail": {"confidence": 0.1},
                         "handoff_reason": "low confidence (0.10 < 0.50)"}, zh) == "low confidence (0.10 < 0.50)"
    assert escalation_text({"escalation_reason": "the customer seems angry"}, zh) == "the customer seems angry"
    custom = {"escalation_detail": {"sentiment": "angry", "p_escalate": 0.9, "threshold": 0.5}}
    assert escalation_text(custom, zh) == "客户似乎angry（升级概率 0.90 ≥ 阈值 0.50）"   # a bundle's own label
    assert sentiment_name("negative", zh) == "不满" and sentiment_name("angry", zh) == "angry"


def _string_arguments(path, pattern: str) -> set[str]:
    from conftest import ROOT

    return {m for groups in re.findall(pattern, (ROOT / path).read_text(encoding="utf-8"))
            for m in ([groups] if isinstance(groups, str) else groups) if m}


def test_every_rebuild_stage_and_candidate_reason_is_shown_in_chinese():
    from lepton_apps.support.page_texts import candidate_reason, stage_text

    # progress(stage, fraction) calls: a string literal followed by a fraction
    stages = (_string_arguments("apps/support/training.py", r'\(\s*"([^"{}]+)",\s*(?:0?\.\d+|1\.0)\s*\)')
              | _string_arguments("apps/support/review.py", r'\(\s*"([^"{}]+)",\s*(?:0?\.\d+|1\.0)\s*\)'))
    assert {"reading the knowledge base", "writing the bundle", "done"} <= stages
    han = re.compile("[\u4e00-\u9fff]")
    assert not [s for s in stages if not han.search(stage_text(s, TEXTS["zh"]))], "add stage_<name> to page_texts"
    assert all(stage_text(s, TEXTS["en"]) == s for s in stages)
    reasons = _string_arguments("apps/support/review.py",
                                r'"reason":\s*"([^"]+)"|reason="([^"]+)"(?:\s+if\s+\w+\s+else\s+"([^"]+)")?')
    assert reasons == {"thumbs-down", "thumbs-down-resolved", "handoff-resolved", "wrong-answer-resolved"}
    assert all(han.search(candidate_reason(r, TEXTS["zh"])) for r in reasons)
    assert candidate_reason("something-new", TEXTS["zh"]) == "something-new"


def test_the_page_language_follows_the_chosen_bundle_until_the_user_picks_one(zh_build, demo_bundle):
    from conftest import ROOT

    Registry().register(zh_build[2], "support-zh-test")
    Registry().register(demo_bundle, "support-demo-test")
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=TIMEOUT)
    at.session_state["support_bundle"] = "support-demo-test"
    at.run()
    assert not _errors(at)
    assert at.radio(key="support_lang").value == "en" and at.title[0].value == "Support assistant"
    at.selectbox(key="support_bundle").set_value("support-zh-test").run()
    assert at.radio(key="support_lang").value == "zh" and at.title[0].value == "智能客服"
    assert at.selectbox(key="support_bundle").value == "support-zh-test"
    at.radio(key="support_lang").set_value("en").run()
    at.selectbox(key="support_bundle").set_value("support-demo-test").run()
    at.selectbox(key="support_bundle").set_value("support-zh-test").run()
    assert at.radio(key="support_lang").value == "en" and at.title[0].value == "Support assistant"
    assert at.session_state["support_lang_chosen"] == "en"   # kept outside the widget
    # back from another hub page after picking Chinese: Streamlit dropped the switch's widget state, the picked
    # language is kept (not the English bundle's)
    back = AppTest.from_file(str(ROOT / PAGE), default_timeout=TIMEOUT)
    back.session_state["support_lang_chosen"] = "zh"
    back.session_state["support_bundle"] = "support-demo-test"
    back.run()
    assert not _errors(back)
    assert back.radio(key="support_lang").value == "zh" and back.title[0].value == "智能客服"


def test_backend_picker_chooses_how_questions_are_encoded_and_the_chat_says_which(page):
    pytest.importorskip("onnxruntime")
    at = page
    assert at.selectbox(key="support_backend").value == "auto"
    assert "questions encoded by onnx-fp32" in [c.value for c in at.caption]
    at.selectbox(key="support_backend").set_value("torch").run()
    at.chat_input[0].set_value("my card was stolen").run()
    assert not _errors(at)
    assert "questions encoded by torch" in [c.value for c in at.caption]
    assert FeedbackStore().frame().empty  # nothing rated yet; the reply's version names the backend:
    at.button(key="support_fb_0_1").click().run()
    assert FeedbackStore().frame()["model_version"].iloc[0].endswith("/torch")
