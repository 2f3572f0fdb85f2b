"""Chinese text in the support template's lexical search: normalisation, segmentation, language, query length."""
import json
import sys
import threading
import time
from pathlib import Path

import bm25s
import numpy as np
import pytest

from lepton_apps.errors import DependencyError
from lepton_apps.support import text
from lepton_apps.support.index import FaqIndex
from lepton_apps.support.text import detect_language, kb_language, normalize, query_length, tokenize, truncate

SUPPORT = Path(__file__).resolve().parents[1] / "apps" / "support"


def _tokens(s: str) -> list[str]:
    return tokenize([normalize(s)])[0]


def test_bank_sentences_are_segmented_into_words_without_function_words():
    # jieba's words (search mode: a compound and its parts), then the characters; 请, 我, 的, 了, 被 ... are dropped
    assert _tokens("请问信用卡怎么挂失") == ["信用", "信用卡", "怎么", "挂失", "问", "信", "用", "卡", "怎", "挂", "失"]
    tokens = _tokens("信用卡挂失后多久能补办新卡")
    assert {"信用卡", "挂失", "多久", "补办"} <= set(tokens)
    assert _tokens("我的账户被冻结了怎么办") == ["账户", "冻结", "怎么", "怎么办", "账", "户", "冻", "结", "怎", "办"]
    assert {"转账", "手续费", "多少"} <= set(_tokens("转账手续费是多少")) and "是" not in _tokens("转账手续费是多少")
    # the old tokenizer kept a whole Chinese sentence as one token: a question found nothing
    assert bm25s.tokenize(["请问信用卡怎么挂失"], stopwords="en", return_ids=False, show_progress=False) == [["请问信用卡怎么挂失"]]


def test_traditional_becomes_simplified_and_full_width_becomes_half_width():
    assert normalize("請問信用卡怎麼掛失") == "请问信用卡怎么挂失"
    assert normalize("我的帳戶被凍結了") == "我的账户被冻结了"      # 帐 folded to 账, as Mainland texts write it
    assert normalize("網路銀行的軟體") == "网络银行的软件"          # Taiwan phrasing too
    assert normalize("请问信用卡怎么挂失") == "请问信用卡怎么挂失"  # Simplified text is left as it is
    assert normalize("ＡＢＣ１２３？") == "abc123?"                 # NFKC (ABC123?), then lower case
    assert normalize("Ｈｏｗ　ｄｏ Ｉ ｐａｙ？") == "how do i pay?"
    assert _tokens("請問信用卡怎麼掛失") == _tokens("请问信用卡怎么挂失")


def test_punctuation_and_emoji_are_dropped_and_digits_kept():
    assert _tokens("我的卡被吞了😭😭！！") == ["卡", "吞", "卡", "吞"]   # one-character words: as word and as character
    assert _tokens("card stuck 😭🙏!!") == ["card", "stuck"]
    assert _tokens("【通知】“挂失”、《补办》。") == ["通知", "通", "知", "挂失", "挂", "失", "补办", "补", "办"]
    assert "24" in _tokens("24小时客服电话是多少？") and "2000" in _tokens("ＡＴＭ最多取2000元")
    assert _tokens("😭😭😭") == [] and _tokens("？！。，") == []


def test_mixed_chinese_and_english_is_tokenised_in_one_pass_in_order():
    assert _tokens("我的debit card被吞了") == ["debit", "card", "吞", "吞"]
    assert _tokens("ATM机吞了我的Visa卡，the card is gone") == ["atm", "机", "吞", "机", "吞", "visa", "卡", "卡", "card",
                                                              "gone"]


def test_detect_language_by_script():
    cases = {"我的debit card被吞了": "zh", "请问ATM withdrawal limit是多少钱": "zh",   # 6 x 3 = 18 = letters: a tie
             "請問信用卡怎麼掛失": "zh", "How do I block my card?": "en",
             "ＨＯＷ ＤＯ Ｉ ＰＡＹ": "en", "I lost my 信用卡, what should I do now?": "en",
             "クレジットカードをなくしました": "ja", "口座を開設したいです": "ja", "카드를 분실했어요": "ko",
             "Как заблокировать карту?": "ru", "😭😭!!": "und", "": "und", "12345": "und"}
    assert {s: detect_language(s) for s in cases} == cases
    assert kb_language(["信用卡挂失", "如何转账", "What is IBAN?", "😭"]) == "zh"
    assert kb_language(["How do I pay?", "Where is my card?", "如何转账"]) == "en"
    assert kb_language(["😭", ""]) == "und"


def _demo_texts() -> list[str]:
    kb = json.loads((SUPPORT / "demo_kb.json").read_text())["records"]
    questions = json.loads((SUPPORT / "demo_questions.json").read_text())["records"]
    return [t for r in kb for t in (r["question"], *r["paraphrases"], r["answer"])] + [q["question"] for q in questions]


def test_english_tokens_and_bm25_scores_are_unchanged_on_the_demo_kb():
    texts = _demo_texts()
    old = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
    assert tokenize([normalize(t) for t in texts]) == old
    kb = json.loads((SUPPORT / "demo_kb.json").read_text())["records"]
    kb_texts = [t for r in kb for t in (r["question"], *r["paraphrases"])]
    owner = [i for i, r in enumerate(kb) for _ in (r["question"], *r["paraphrases"])]
    before = bm25s.BM25()
    before.index(bm25s.tokenize(kb_texts, stopwords="en", show_progress=False), show_progress=False)
    index = FaqIndex(np.zeros((len(kb_texts), 4), dtype=np.float32), owner, kb_texts)
    for q in json.loads((SUPPORT / "demo_questions.json").read_text())["records"][:60]:
        tokens = bm25s.tokenize([q["question"]], stopwords="en", return_ids=False, show_progress=False)[0]
        expected = before.get_scores(tokens) if tokens else np.zeros(len(kb_texts))
        np.testing.assert_allclose(index.lexical_scores(q["question"]), expected, rtol=1e-6, atol=1e-6)


def test_faq_index_finds_the_simplified_entry_for_a_traditional_question():
    kb = [["信用卡丢了怎么挂失", "银行卡丢失如何挂失"],
          ["转账手续费是多少", "跨行转账收费吗"],
          ["我的账户被冻结了怎么办", "账户冻结如何解冻"]]
    texts = [t for row in kb for t in row]
    owner = [i for i, row in enumerate(kb) for _ in row]
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(texts), 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index = FaqIndex(emb, owner, texts)
    query_emb = rng.normal(size=8).astype(np.float32)
    for question, row in [("請問信用卡怎麼掛失", 0), ("跨行轉帳要收手續費嗎？", 1), ("我的帳戶被凍結了", 2)]:
        hits = index.search(query_emb, question, k=3, weight=0.0)   # weight 0: the lexical score alone ranks
        assert hits[0].row == row and hits[0].lexical == 1.0 and hits[1].lexical < 1.0, (question, hits)
    assert index.lexical_scores("😭！").max() == 0.0


def test_query_length_counts_a_han_character_as_three_units_and_truncate_cuts_by_units():
    assert query_length("How do I pay?") == 13
    assert query_length("信用卡") == 9 and query_length("我的debit card") == 6 + 10
    assert query_length("カード") == 6 and query_length("카드") == 4
    long_zh = "信用卡挂失" * 500
    cut = truncate(long_zh, 2_000)
    assert long_zh.startswith(cut) and len(cut) == 666 and query_length(cut) <= 2_000
    assert truncate("a" * 2_500, 2_000) == "a" * 2_000
    assert truncate("ab信用卡", 5) == "ab信" and truncate("ab信用卡", 4) == "ab"
    assert truncate("请问信用卡怎么挂失", 2_000) == "请问信用卡怎么挂失"
    with pytest.raises(ValueError, match="limit"):
        truncate("abc", -1)


def test_tokenize_is_the_same_from_several_threads():
    questions = [normalize(q) for q in ["請問信用卡怎麼掛失", "转账手续费是多少", "我的debit card被吞了"] * 50]
    expected = tokenize(questions)
    results: list = [None] * 4

    def work(i):
        results[i] = tokenize(questions)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results)


def test_a_missing_converter_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(text, "_converter", None)
    monkeypatch.setitem(sys.modules, "opencc", None)
    with pytest.raises(DependencyError, match="pip install opencc"):
        normalize("請問")
    assert normalize("English needs no converter") == "english needs no converter"


def test_tokenizer_info_names_the_scheme_and_the_installed_versions():
    from importlib import metadata

    info = text.tokenizer_info()
    assert info == {"scheme": text.SCHEME, "opencc": metadata.version("opencc"), "jieba": metadata.version("jieba")}
    assert "jieba" in info["scheme"] and text.OPENCC_CONFIG in info["scheme"]


def test_speed_of_tokenising_ten_thousand_short_chinese_questions():
    base = ["請問信用卡怎麼掛失", "我的账户被冻结了怎么办", "跨行转账要多久到账", "网上银行密码忘记了怎么重置",
            "我的debit card被ATM吞了", "信用卡年费可以免除吗"]
    questions = [f"{base[i % len(base)]}{i}" for i in range(10_000)]
    tokenize([normalize("预热")])   # the one-off jieba dictionary load is not timed
    start = time.perf_counter()
    tokens = tokenize([normalize(q) for q in questions])
    seconds = time.perf_counter() - start
    print(f"\nnormalize + tokenize of 10,000 short Chinese questions: {seconds:.2f} s")
    assert len(tokens) == 10_000 and all(tokens)
    assert tokens[0] == _tokens(base[0]) and tokens[10][-1] == "10"   # a one-digit suffix is dropped, as in English
