"""Text keys for the lexical (BM25) search in any language: normalisation, language, tokens, query length.

The dense encoder reads a question as the customer wrote it; BM25 reads a *search key*: the same
:func:`normalize` applied to the KB's texts and to every question, then :func:`tokenize`.

- :func:`normalize`: Unicode NFKC (full-width letters, digits and punctuation become half-width),
  Traditional Chinese to Simplified with OpenCC's ``tw2sp`` (characters and Taiwan/Hong Kong phrasing:
  請問 -> 请问, 軟體 -> 软件), 帐 folded to 账 (OpenCC writes 帳戶 as 帐户, Mainland texts write 账户),
  lower case. A Traditional question thus finds a Simplified KB entry and the other way round.
- :func:`tokenize`: a run of Han characters gives jieba's words (search mode: a compound and its dictionary
  parts, 信用卡 -> 信用, 信用卡; no HMM guessing, so a KB text and a question split the same way) followed by
  each of its characters, so that a word jieba splits one way in the KB and another way in a question
  (到账 / 到 账) still matches; every other run is split exactly as before (``bm25s.tokenize(stopwords="en")``:
  words of 2+ letters or digits, English stopwords removed), so pure-English text gives the same tokens as
  before. Punctuation and emoji are dropped, and a short list of Chinese function words and characters
  (的, 了, 吗, 我, 请问, ...) is removed. On an 83-FAQ Chinese banking KB (the draft demo_kb_zh.json, its 166
  questions, BM25 alone, top-1) words + characters found 83.7 %, characters alone 81.9 %, jieba's words
  alone 73.5 %.
- :func:`detect_language` / :func:`kb_language`: a script count (rule in :func:`detect_language`).
- :func:`query_length` / :func:`truncate`: the question-length limit in units of about one English
  character of meaning, a Han character counting 3 (rule in :func:`query_length`).
- :func:`clean_question`: any customer message (bytes too) as clean, length-capped text, or the problem that
  makes it no question (:data:`EMPTY_QUESTION`, :data:`BINARY_DATA`, :data:`UNREADABLE_TEXT`, :data:`NO_WORDS`).

OpenCC and jieba are imported on the first text that holds a Han character: English-only use needs neither.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from typing import Any, Iterable, Sequence

# Script classes (after NFKC). Han: CJK unified ideographs, extension A, compatibility block, planes 2-3, and 〇.
HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
KANA = "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff"
HANGUL = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff"
_HAN_CHAR = re.compile(f"[{HAN}]")
_HAN_RUN = re.compile(f"[{HAN}]+")
_KANA_CHAR = re.compile(f"[{KANA}]")
_HANGUL_CHAR = re.compile(f"[{HANGUL}]")
_LATIN_CHAR = re.compile(f"[{LATIN}]")
_WORD = re.compile(r"(?u)\b\w\w+\b")   # bm25s.tokenize's default token pattern
# other scripts -> the language most texts in them are written in (a guess, like "en" for Latin)
_SCRIPTS = {"ru": "\u0400-\u04ff", "el": "\u0370-\u03ff", "ar": "\u0600-\u06ff", "he": "\u0590-\u05ff",
            "th": "\u0e00-\u0e7f", "hi": "\u0900-\u097f"}
_SCRIPT_CHARS = {lang: re.compile(f"[{rng}]") for lang, rng in _SCRIPTS.items()}

# Units of meaning per character (see query_length): a Han character ~ 2/3 of a Chinese word ~ 3-4 English
# characters; kana and Hangul syllables carry less (particles, inflections; Korean separates words by spaces).
HAN_WEIGHT = 3
KANA_WEIGHT = 2
HANGUL_WEIGHT = 2

OPENCC_CONFIG = "tw2sp"
# Names the search-key scheme; change it whenever normalize or tokenize would give other tokens for some text.
SCHEME = "nfkc+opencc-tw2sp+jieba-search-nohmm+han-chars+bm25s-en/1"
_FOLD = str.maketrans({"帐": "账"})

# English stopwords: bm25s's "en" list (NLTK's short list), as the index used before.
STOPWORDS_EN = frozenset(("a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
                          "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there",
                          "these", "they", "this", "to", "was", "will", "with"))
# Chinese function words (Simplified, as normalize writes them): particles, pronouns, copula and connectives,
# polite fillers. Question words (怎么, 多少, 多久, 什么) stay: they tell "how" from "how much" from "how long".
STOPWORDS_ZH = frozenset((
    "的", "地", "得", "了", "着", "过", "吗", "呢", "吧", "啊", "呀", "哦", "嘛", "啦", "么", "之",
    "我", "你", "您", "他", "她", "它", "我们", "你们", "他们", "咱们", "自己",
    "是", "在", "和", "与", "及", "或", "而", "就", "都", "也", "还", "又", "把", "被", "对", "个",
    "这", "那", "这个", "那个", "这样", "那样",
    "请问", "请", "一下", "麻烦", "谢谢", "你好", "您好", "想", "要",
))

_lock = threading.Lock()
_converter = None
_segmenter = None


def _opencc():
    """Return the shared OpenCC Traditional -> Simplified converter (created on first use)."""
    global _converter
    if _converter is None:
        with _lock:
            if _converter is None:
                from lepton_apps.errors import require

                opencc = require("opencc", feature="Chinese text in the support template's search")
                _converter = opencc.OpenCC(OPENCC_CONFIG)
    return _converter


def _jieba():
    """Return the shared jieba tokenizer, initialised once and quietly (its log goes to stderr otherwise)."""
    global _segmenter
    if _segmenter is None:
        with _lock:
            if _segmenter is None:
                import logging

                from lepton_apps.errors import require

                jieba = require("jieba", feature="Chinese word segmentation in the support template's search")
                jieba.setLogLevel(logging.WARNING)
                segmenter = jieba.Tokenizer()
                segmenter.initialize()   # builds (or reads a cached) prefix dictionary from the packaged dict.txt
                _segmenter = segmenter
    return _segmenter


def normalize(text: str) -> str:
    """Return the search key of ``text``: NFKC, Traditional -> Simplified Chinese, 帐 -> 账, lower case."""
    text = unicodedata.normalize("NFKC", text)
    if _HAN_CHAR.search(text):
        text = _opencc().convert(text).translate(_FOLD)
    return text.lower()


def _latin_tokens(text: str) -> list[str]:
    """Return the tokens of a text without Han characters, exactly as ``bm25s.tokenize(stopwords="en")``."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS_EN]


def _han_tokens(run: str) -> list[str]:
    """Return the tokens of a run of Han characters: its words (jieba search mode, no HMM), then its characters,
    Chinese stopwords removed (a one-character word counts as a word and as a character)."""
    words = [w for w in _jieba().cut_for_search(run, HMM=False) if w not in STOPWORDS_ZH]
    return words + [ch for ch in run if ch not in STOPWORDS_ZH]


def _tokens(text: str) -> list[str]:
    """Return the BM25 tokens of one text: Han runs by jieba, the text between them as English, in order."""
    if not _HAN_CHAR.search(text):
        return _latin_tokens(text)
    out: list[str] = []
    pos = 0
    for m in _HAN_RUN.finditer(text):
        out += _latin_tokens(text[pos:m.start()])
        out += _han_tokens(m.group())
        pos = m.end()
    out += _latin_tokens(text[pos:])
    return out


def tokenize(texts: Sequence[str] | Iterable[str]) -> list[list[str]]:
    """Return the BM25 tokens of each text (apply :func:`normalize` first; see the module docstring)."""
    return [_tokens(t) for t in texts]


def tokenizer_info() -> dict[str, str | None]:
    """Return what decides the BM25 tokens (to record in a bundle): the scheme and the installed OpenCC and jieba
    versions (None when not installed); a bundle whose record differs may rank Chinese texts differently."""
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {"scheme": SCHEME, "opencc": version("opencc"), "jieba": version("jieba")}


def _script_mass(text: str) -> dict[str, int]:
    """Return the weighted count of letters per script: han, kana, hangul, latin, and the other scripts."""
    mass = {"han": HAN_WEIGHT * len(_HAN_CHAR.findall(text)), "kana": KANA_WEIGHT * len(_KANA_CHAR.findall(text)),
            "hangul": HANGUL_WEIGHT * len(_HANGUL_CHAR.findall(text)), "latin": len(_LATIN_CHAR.findall(text))}
    for lang, pattern in _SCRIPT_CHARS.items():
        mass[lang] = len(pattern.findall(text))
    return mass


def detect_language(text: str) -> str:
    """Return the language of ``text`` by script: "zh", "ja", "ko", "en", "ru", "el", "ar", "he", "th", "hi" or "und".

    Rule: letters are counted per script after NFKC, a Han character counting 3 and a kana or Hangul one 2
    (the weights of :func:`query_length`, so that a script's share is its share of the meaning). The script
    with the largest count wins; a tie between CJK and another script goes to CJK ("我的debit card被吞了":
    Han 5 x 3 = 15 > 9 Latin letters -> "zh"). Among CJK: Hangul the largest of the three -> "ko"; kana
    at least a tenth of the Han + kana characters -> "ja" (Japanese writes particles and endings in kana);
    else "zh". Latin script -> "en" (the tokenizer treats every Latin text as English); the other listed
    scripts -> the language most often written in them; no letters -> "und". A text of kanji only reads as "zh".
    """
    text = unicodedata.normalize("NFKC", str(text))
    mass = _script_mass(text)
    cjk = mass["han"] + mass["kana"] + mass["hangul"]
    other = max((v, k) for k, v in mass.items() if k not in ("han", "kana", "hangul"))
    if cjk == 0 and other[0] == 0:
        return "und"
    if cjk >= other[0]:
        if mass["hangul"] >= max(mass["han"], mass["kana"]):
            return "ko"
        kana, han = mass["kana"] / KANA_WEIGHT, mass["han"] / HAN_WEIGHT
        return "ja" if kana >= 0.1 * (han + kana) else "zh"
    return "en" if other[1] == "latin" else other[1]


def kb_language(texts: Iterable[str]) -> str:
    """Return the language of most texts of a KB (:func:`detect_language`; "und" texts do not vote; ties go to
    the language met first; "und" when no text has letters)."""
    votes = Counter(lang for lang in map(detect_language, texts) if lang != "und")
    return votes.most_common(1)[0][0] if votes else "und"


def _weight(ch: str) -> int:
    """Return the units of one character (see :func:`query_length`)."""
    if ch < "\u1100":   # below every CJK block: Latin, Cyrillic, Greek, ...
        return 1
    if _HAN_CHAR.match(ch):
        return HAN_WEIGHT
    if _KANA_CHAR.match(ch):
        return KANA_WEIGHT
    if _HANGUL_CHAR.match(ch):
        return HANGUL_WEIGHT
    return 1


def query_length(text: str) -> int:
    """Return the length of ``text`` in units of about one English character of meaning.

    Rule: a Han character counts 3 (a Chinese word is ~1.5 characters, an English one ~5.7 with its space, so
    one Han character carries what ~3.8 English characters do; 3 rounds down, erring towards keeping text),
    a kana or Hangul character 2, every other character 1. The 2,000-unit default limit keeps ~350 English
    words or ~660 Chinese characters (~440 Chinese words).
    """
    return len(text) + (HAN_WEIGHT - 1) * len(_HAN_CHAR.findall(text)) \
        + (KANA_WEIGHT - 1) * len(_KANA_CHAR.findall(text)) + (HANGUL_WEIGHT - 1) * len(_HANGUL_CHAR.findall(text))


def truncate(text: str, limit: int) -> str:
    """Return the longest prefix of ``text`` whose :func:`query_length` is at most ``limit`` (``text`` itself when it
    fits; compare lengths to know whether it was cut)."""
    if limit < 0:
        raise ValueError(f"truncate: limit must be >= 0, got {limit}")
    if len(text) * max(HAN_WEIGHT, KANA_WEIGHT, HANGUL_WEIGHT) <= limit or query_length(text) <= limit:
        return text
    used = 0
    for i, ch in enumerate(text):
        used += _weight(ch)
        if used > limit:
            return text[:i]
    return text


# clean_question's problems
EMPTY_QUESTION = "empty question"
BINARY_DATA = "the message is not readable text (binary data)"
UNREADABLE_TEXT = "the message is not readable text (binary data or unknown encoding)"
NO_WORDS = "the message holds no words to search for"  # a hand-off, not an input error (e.g. only emoji)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_question(text: Any, max_chars: int) -> tuple[str, bool, str | None]:
    """Return (clean text, truncated?, problem) for any input: bytes are decoded, controls removed, length capped
    at ``max_chars`` units (:func:`query_length`: a Han character counts 3)."""
    if text is None or (isinstance(text, float) and text != text):
        return "", False, EMPTY_QUESTION
    if isinstance(text, (bytes, bytearray)):
        raw = bytes(text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            if b"\x00" in raw:
                return "", False, BINARY_DATA
            text = raw.decode("cp1252", errors="replace")  # the usual non-UTF-8 encoding of typed text
    text = str(text)
    if text and sum(ch.isprintable() or ch.isspace() for ch in text) < 0.7 * len(text):
        return "", False, UNREADABLE_TEXT
    text = unicodedata.normalize("NFC", str(text))
    text = _CONTROL.sub(" ", text).strip()
    if not text:
        return "", False, EMPTY_QUESTION
    letters = sum(ch.isalnum() for ch in text)
    cut = truncate(text, max_chars)
    if letters == 0:
        return cut, False, NO_WORDS
    return cut, len(cut) < len(text), None
