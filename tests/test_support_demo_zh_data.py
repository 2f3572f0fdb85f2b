"""Chinese demo data of the support template (云端银行): schema, counts, splits and scripts of the three files."""
import collections
import json
import re
import unicodedata
from pathlib import Path

import pytest

from lepton_apps.support.data import read_kb, read_labelled, read_questions

HERE = Path(__file__).resolve().parents[1] / "apps" / "support"
CATEGORIES = {"account", "cards", "security", "transfers", "payments", "loans", "savings", "fees", "app"}
KEBAB = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
FORMAL = re.compile("请问|如何|是否|您好|烦请|本人|能否")
CJK = re.compile(r"[\u4e00-\u9fff]")
EMOJI_OR_FULLWIDTH = re.compile("[\uff01-\uff5e\u3001\u3002\u300c\u300d\u201c\u201d\u2026\U0001f300-\U0001faff]")
# Characters that exist in only one of the two scripts (simplified 户 vs traditional 戶, and so on).
TRADITIONAL_ONLY = set("請問麼這們帳賬戶號轉錢銀張綁開關務費點時間應該為會過買賣額員碼詢讓嗎還沒從發換變壞簡體設條無辦樣"
                       "見給說話認證機網鐘氣單價歷貸結幣個塊現動國實匯凍鎖掛顯處錄裡幫馬際啟記鈔貼協")
SIMPLIFIED_ONLY = set("请问么这们账户号转钱银张绑开关务费点时间应该为会过买卖额员码询让吗还没从发换变坏简体设条无办样"
                      "见给说话认证机网钟气单价历贷结币个块现动国实汇冻锁挂显处录帮马际启记钞贴协")


def load(name):
    """Return the ``records`` list of one of the Chinese demo files, checking the top-level shape."""
    data = json.loads((HERE / name).read_text(encoding="utf-8"))
    assert set(data) == {"about", "records"}, name
    assert "Lepton Apps" in data["about"] and "fictional" in data["about"], name
    return data["records"]


def bare(text):
    """Return ``text`` lower-cased without whitespace, punctuation or symbols (for near-copy checks)."""
    return "".join(ch for ch in text.lower() if unicodedata.category(ch)[0] in "LN")


@pytest.fixture(scope="module")
def kb():
    return load("demo_kb_zh.json")


@pytest.fixture(scope="module")
def questions():
    return load("demo_questions_zh.json")


@pytest.fixture(scope="module")
def sentiment():
    return load("demo_sentiment_zh.json")


def test_script_sets_do_not_overlap():
    assert not TRADITIONAL_ONLY & SIMPLIFIED_ONLY


def test_kb_schema_ids_categories_and_urls(kb):
    english = json.loads((HERE / "demo_kb.json").read_text(encoding="utf-8"))["records"]
    assert 70 <= len(kb) <= 90
    ids = [r["id"] for r in kb]
    assert len(set(ids)) == len(ids), [i for i, n in collections.Counter(ids).items() if n > 1]
    assert {r["id"] for r in english} <= set(ids), "every English FAQ id has a Chinese entry"
    assert {r["category"] for r in kb} == CATEGORIES
    for r in kb:
        assert list(r) == list(english[0]), r["id"]
        assert KEBAB.fullmatch(r["id"]), r["id"]
        assert r["url"] == f"https://nimbusbank.example/zh/help/{r['id']}"
        for text in [r["question"], r["answer"], *r["paraphrases"]]:
            assert CJK.search(text) and not TRADITIONAL_ONLY & set(text), (r["id"], text)


def test_kb_paraphrases_are_varied_and_answers_are_two_or_three_sentences(kb):
    for r in kb:
        paraphrases = r["paraphrases"]
        assert 3 <= len(paraphrases) <= 5, r["id"]
        texts = [bare(t) for t in [r["question"], *paraphrases]]
        assert len(set(texts)) == len(texts), f"{r['id']}: a paraphrase repeats the question or another paraphrase"
        assert any(LATIN_WORD.search(p) for p in paraphrases), f"{r['id']}: no paraphrase mixes in an English word"
        assert any(FORMAL.search(p) for p in paraphrases), f"{r['id']}: no formal paraphrase (请问 / 如何 / 是否 ...)"
        assert any(" " in p and len(p) <= 10 for p in paraphrases), f"{r['id']}: no short keyword-style paraphrase"
        sentences = re.findall(r"[。！？]", r["answer"])
        assert r["answer"].endswith("。") and 2 <= len(sentences) <= 3, (r["id"], r["answer"])


def test_questions_cover_every_faq_twice_and_fifty_out_of_scope(kb, questions):
    ids = {r["id"] for r in kb}
    for r in questions:
        assert set(r) in ({"question", "faq_id", "split"}, {"question", "faq_id", "split", "script"}), r
        assert r["split"] in {"val", "test"}
        assert r["faq_id"] is None or r["faq_id"] in ids, r
    per_faq = collections.Counter((r["faq_id"], r["split"]) for r in questions if r["faq_id"])
    assert all(per_faq[(i, s)] == 1 for i in ids for s in ("val", "test")), "each FAQ needs one val and one test question"
    oos = collections.Counter(r["split"] for r in questions if r["faq_id"] is None)
    assert oos == {"val": 25, "test": 25}
    texts = [bare(r["question"]) for r in questions]
    assert len(set(texts)) == len(texts), "duplicate held-out question"


def test_questions_are_not_copied_from_the_kb(kb, questions):
    seen = {bare(t) for r in kb for t in [r["question"], *r["paraphrases"]]}
    copied = [r["question"] for r in questions if bare(r["question"]) in seen]
    assert not copied, f"held-out questions equal to KB text: {copied}"


def test_questions_mix_scripts_english_and_informal_punctuation(questions):
    in_scope = [r for r in questions if r["faq_id"]]
    traditional = [r for r in in_scope if r.get("script") == "traditional"]
    assert len(traditional) >= 15
    assert all(r["script"] == "traditional" for r in questions if "script" in r)
    for r in questions:
        chars = set(r["question"])
        if r.get("script") == "traditional":
            assert chars & TRADITIONAL_ONLY and not chars & SIMPLIFIED_ONLY, r["question"]
        else:
            assert not chars & TRADITIONAL_ONLY, f"Traditional characters without script=traditional: {r['question']}"
    assert sum(bool(LATIN_WORD.search(r["question"])) for r in in_scope) >= 10
    assert sum(bool(EMOJI_OR_FULLWIDTH.search(r["question"])) for r in in_scope) >= 10


def test_sentiment_labels_groups_and_stratified_splits(sentiment):
    english = json.loads((HERE / "demo_sentiment.json").read_text(encoding="utf-8"))["records"]
    group_label = {r["group"]: r["label"] for r in english}
    assert 300 <= len(sentiment) <= 400
    texts = [r["text"] for r in sentiment]
    assert len(set(texts)) == len(texts), [t for t, n in collections.Counter(texts).items() if n > 1]
    for r in sentiment:
        assert list(r) == ["text", "label", "group", "split"], r
        assert r["split"] in {"train", "test"} and CJK.search(r["text"]), r
        assert group_label.get(r["group"]) == r["label"], f"group {r['group']!r} does not go with label {r['label']!r}"
    assert {r["group"] for r in sentiment} == set(group_label)
    for field in ("label", "group"):
        cells = collections.defaultdict(collections.Counter)
        for r in sentiment:
            cells[r[field]][r["split"]] += 1
        for value, c in cells.items():
            assert 0.2 <= c["test"] / (c["test"] + c["train"]) <= 0.3, (field, value, c)
    share = lambda rows, label: sum(r["label"] == label for r in rows) / len(rows)  # noqa: E731
    for label in ("neutral", "negative", "urgent"):
        assert abs(share(sentiment, label) - share(english, label)) <= 0.05, label


def test_files_load_through_the_support_readers(kb, questions, sentiment):
    table = read_kb(HERE / "demo_kb_zh.json")
    assert len(table) == len(kb) and table["paraphrases"].map(len).min() >= 3
    held_out = read_questions(HERE / "demo_questions_zh.json", kb_ids=set(table["id"]))
    assert (held_out["faq_id"] == "").sum() == 50 and len(held_out) == len(questions)
    labelled = read_labelled(HERE / "demo_sentiment_zh.json", "label", what="sentiment data")
    assert sorted(labelled["label"].unique()) == ["negative", "neutral", "urgent"] and len(labelled) == len(sentiment)
