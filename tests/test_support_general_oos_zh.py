"""Chinese general out-of-scope questions of the support template: shape, size, topics, scripts and no banking."""
import collections
import json
import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1] / "apps" / "support"
CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
EMOJI_OR_FULLWIDTH = re.compile("[\uff01-\uff5e\u3001\u3002\u201c\u201d\u2026\u300a\u300b"
                                "\U0001f300-\U0001faff\u2600-\u26ff]")
# Characters found only in Traditional script (their Simplified forms differ), to measure the Traditional share.
TRADITIONAL_ONLY = set("們這麼請問嗎會個為過還說話電腦時間點樣東車門開關見風氣貓鳥網裡後幾錢買賣寫學醫藥號愛歲"
                       "辦證帶對誰換機際馬貨擊腦藍週臺灣結嗎較燒滷麵飯湯夠備讓從聽錯隊職嗎體實遊戲囉薦")
# Words of the demo KB's topics (banking, cards, payments, transfers, loans, savings, fees, account security), in
# Simplified and Traditional forms: no general out-of-scope question may use them.
BANKING = ("银行", "銀行", "信用卡", "借记卡", "借記卡", "银行卡", "卡号", "卡號", "刷卡", "转账", "轉賬", "轉帳", "贷款",
           "貸款", "存款", "取款", "利息", "利率", "手续费", "手續費", "账户", "賬戶", "帳戶", "开户", "開戶", "销户", "銷戶",
           "余额", "餘額", "密码", "密碼", "验证码", "驗證碼", "挂失", "掛失", "冻结", "凍結", "汇款", "匯款", "汇率",
           "匯率", "外币", "外幣", "理财", "理財", "支付", "付款", "退款", "充值", "缴费", "繳費", "提现", "提現", "花呗",
           "借呗", "余额宝", "網銀", "网银", "信用", "红包", "紅包", "分期", "atm", "visa", "mastercard", "paypal")


@pytest.fixture(scope="module")
def data():
    return json.loads((HERE / "general_oos_zh.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def texts(data):
    return [q["text"] for q in data["questions"]]


def test_shape_matches_the_english_file_and_is_written_as_documented(data):
    english = json.loads((HERE / "general_oos.json").read_text(encoding="utf-8"))
    assert list(data) == list(english) == ["about", "license", "questions"]
    assert "Lepton Apps" in data["about"] and "by hand" in data["about"]
    assert data["license"] == english["license"]
    for q in data["questions"]:
        assert list(q) == ["text", "topic"], q
        assert isinstance(q["text"], str) and q["text"] == q["text"].strip() and q["text"], q
    raw = (HERE / "general_oos_zh.json").read_text(encoding="utf-8")
    assert raw == json.dumps(data, ensure_ascii=False, indent=1) + "\n", "write with ensure_ascii=False, indent=1"


def test_size_and_unique_texts(texts):
    assert 350 <= len(texts) <= 450, len(texts)
    repeated = [t for t, n in collections.Counter(re.sub(r"\s+", "", t).lower() for t in texts).items() if n > 1]
    assert not repeated, f"repeated questions: {repeated}"


def test_topics_are_those_of_the_english_file_each_with_several_questions(data):
    english = {q["topic"] for q in json.loads((HERE / "general_oos.json").read_text(encoding="utf-8"))["questions"]}
    counts = collections.Counter(q["topic"] for q in data["questions"])
    assert set(counts) <= english, f"topics not in general_oos.json: {sorted(set(counts) - english)}"
    assert set(counts) == english, f"English topics with no Chinese question: {sorted(english - set(counts))}"
    assert min(counts.values()) >= 5, {t: n for t, n in counts.items() if n < 5}


def test_mostly_chinese_with_traditional_english_mixed_and_short_messages(texts):
    assert sum(bool(CJK.search(t)) for t in texts) >= 0.9 * len(texts)
    traditional = [t for t in texts if TRADITIONAL_ONLY & set(t)]
    assert 0.07 * len(texts) <= len(traditional) <= 0.2 * len(texts), len(traditional)
    assert sum(bool(CJK.search(t) and LATIN_WORD.search(t)) for t in texts) >= 15, "too few mixed with English words"
    assert sum(bool(EMOJI_OR_FULLWIDTH.search(t)) for t in texts) >= 40, "too few with full-width punctuation or emoji"
    assert sum(len(t) <= 3 for t in texts) >= 8, "too few very short messages"


def test_no_question_uses_a_banking_word(texts):
    hits = [(t, w) for t in texts for w in BANKING if w in t.lower()]
    assert not hits, f"banking words (the demo KB's topics) in general out-of-scope questions: {hits}"
