"""Support export: encoder (+ tokenizer, + heads) to ONNX, checked in a fresh ONNX Runtime session; the int8 gate."""
import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from test_support_fixtures import tiny_encoder_dir  # noqa: E402,F401


def _kb(folder):
    rows = [{"id": f"f{i}", "question": f"question number {i} about topic {w}", "answer": f"answer {i}",
             "paraphrases": [f"topic {w} help {i}", f"need info {w} {i}", f"{w} {i} please"], "category": c}
            for i, (w, c) in enumerate([("cards", "a"), ("loans", "b"), ("savings", "b"), ("transfers", "a"),
                                        ("fees", "a"), ("app", "b")])]
    path = folder / "kb.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory, tiny_encoder_dir):  # noqa: F811
    """A tiny-encoder bundle with held-out questions, an intent head and a sentiment (escalation) head."""
    from lepton_apps.support import SupportConfig, train

    folder = tmp_path_factory.mktemp("support-export")
    kb = _kb(folder)
    pd.DataFrame({"text": [f"{w} thing {i}" for w in ("card", "loan", "app") for i in range(8)],
                  "intent": [w for w in ("card", "loan", "app") for _ in range(8)]}).to_csv(folder / "intents.csv",
                                                                                          index=False)
    pd.DataFrame({"text": [f"{w} message {i}" for w in ("calm", "angry") for i in range(10)],
                  "label": [lab for lab in ("neutral", "angry") for _ in range(10)]}).to_csv(folder / "sent.csv",
                                                                                           index=False)
    pd.DataFrame({"question": ["topic cards", "topic loans", "weather today", "topic fees", "topic app", "pizza",
                               "savings 2 help", "transfers info", "a poem", "football"],
                  "faq_id": ["f0", "f1", "", "f4", "f5", "", "f2", "f3", "", ""],
                  "split": ["val", "val", "val", "test", "test", "test", "test", "test", "test", "test"]}
                 ).to_csv(folder / "q.csv", index=False)
    bundle = train(SupportConfig(kb=str(kb), out=str(folder / "bundle"), encoder=tiny_encoder_dir,
                                 questions=str(folder / "q.csv"), intent_data=str(folder / "intents.csv"),
                                 sentiment_data=str(folder / "sent.csv"), head_epochs=3, device="cpu", progress=False))
    return bundle


def test_fp32_export_gives_the_encoders_embeddings_and_the_heads_probabilities_in_a_fresh_session(small, tmp_path):
    from lepton_apps.export import load_export
    from lepton_apps.support import SupportAssistant
    from lepton_apps.support.export import export
    from transformers import AutoTokenizer

    path = export(small, tmp_path / "onnx")
    ex = load_export(path)
    card = ex.card
    assert card["precision"] == "fp32" and card["check"]["max_abs_diff"] <= card["check"]["tolerance"] == 1e-5
    assert card["check"]["rows"] == 24 and card["encoder"]["pooling"] == "mean" and card["encoder"]["prompt"] == ""
    assert set(card["heads"]) == {"intent", "sentiment", "faq"}
    assert card["heads"]["intent"]["labels"] == ["app", "card", "loan"]
    assert card["heads"]["faq"]["labels"] == [f"f{i}" for i in range(6)]
    assert max(card["heads_check"]["max_abs_diff_per_head"].values()) <= 1e-5
    assert [i["name"] for i in card["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]

    # a user's own run: the tokenizer from the folder, a fresh session, no lepton code in the loop
    bot = SupportAssistant.load(small, device="cpu", backend="torch")
    texts = ["topic cards help 0", "a much longer question about moving money between my accounts abroad", "x"]
    tok = AutoTokenizer.from_pretrained(str(path / "tokenizer"), local_files_only=True)
    enc = tok(texts, padding=True, truncation=True, max_length=card["encoder"]["max_length"], return_tensors="np")
    session = ex.session()
    emb = session.run(["embedding"], {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask",
                                                                            "token_type_ids")})[0]
    ref = bot.encoder.encode(texts)
    assert np.abs(emb - ref).max() <= 1e-5
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    from lepton_apps.export import inference_session

    for name, head in (("intent", bot.intent_head), ("sentiment", bot.sentiment_head), ("faq", bot.faq_head)):
        probs = inference_session(path / "heads" / f"{name}.onnx").run(None, {"embedding": ref})[0]
        assert probs.shape == (3, len(card["heads"][name]["labels"]))
        assert np.abs(probs - head.predict_proba(ref)).max() <= 1e-5


def test_a_changed_byte_is_refused(small, tmp_path):
    from lepton_apps.errors import BundleError
    from lepton_apps.export import load_export
    from lepton_apps.support.export import export

    path = export(small, tmp_path / "onnx")
    head = path / "heads" / "intent.onnx"
    data = bytearray(head.read_bytes())
    data[len(data) // 2] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="heads/intent.onnx"):
        load_export(path)


def test_a_wrong_pooling_is_refused_with_its_numbers(small, tmp_path, monkeypatch):
    from lepton_apps.export import ExportError
    from lepton_apps.support import export as support_export

    real = support_export._append_pooling
    monkeypatch.setattr(support_export, "_append_pooling", lambda model, pooling: real(model, "cls"))
    with pytest.raises(ExportError, match=r"differ from the source model's by up to .* more than the tolerance 1e-05"):
        support_export.export(small, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_int8_is_gated_on_the_held_out_questions_with_its_numbers(small, tmp_path):
    from lepton_apps.export import load_export
    from lepton_apps.support.export import export

    # the tiny random encoder's outputs are dominated by its embeddings and layer norms, so int8 MatMul weights
    # barely move them (measured cosine min 0.9999998): it passes, with its numbers in the card
    path = export(small, tmp_path / "int8", quantize="int8")
    card = load_export(path).card
    gate = card["gate"]
    assert card["precision"] == "int8" and gate["passed"]
    assert gate["top1_drop"] <= 0.005 and gate["handoff_recall_drop"] <= 0.01
    assert gate["fp32"]["n_in_scope"] + gate["fp32"]["n_out_of_scope"] == 7       # the test split
    assert 0.999 < gate["cosine_to_fp32"]["min"] <= gate["cosine_to_fp32"]["mean"] <= 1.0 + 1e-6
    assert gate["data"].startswith("the bundle's held-out questions (eval_details.parquet: 7 questions)")
    assert card["quantization"]["op_types"] == ["MatMul", "Gemm"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(path / "model.onnx")).graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops            # really int8


def test_static_int8_is_calibrated_on_kb_texts_and_gated_the_same_way(small, tmp_path):
    import onnx

    from lepton_apps.export import ExportError, load_export
    from lepton_apps.support.export import export

    path = export(small, tmp_path / "int8-static", quantize="int8", int8_method="static", max_top1_drop=0.99,
                  max_handoff_recall_drop=0.99)
    card = load_export(path).card
    assert card["quantization"]["method"] == "static" and card["quantization"]["calibration"].endswith("KB texts")
    assert card["gate"]["passed"] and card["gate"]["cosine_to_fp32"]["mean"] > 0.9
    ops = {n.op_type for n in onnx.load(str(path / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "DynamicQuantizeLinear" not in ops
    with pytest.raises(ExportError, match="unknown int8 method 'fancy'"):
        export(small, tmp_path / "x", quantize="int8", int8_method="fancy")


def test_without_held_out_questions_int8_is_gated_on_leave_one_out_kb_paraphrases(tmp_path, tiny_encoder_dir):  # noqa: F811
    from lepton_apps.export import load_export
    from lepton_apps.support import SupportConfig, train
    from lepton_apps.support.export import export

    bundle = train(SupportConfig(kb=str(_kb(tmp_path)), out=str(tmp_path / "bundle"), encoder=tiny_encoder_dir,
                                 device="cpu", progress=False))
    assert not (bundle / "eval_details.parquet").exists()
    path = export(bundle, tmp_path / "int8", quantize="int8")   # int8 barely moves the tiny encoder (see above)
    gate = load_export(path).card["gate"]
    assert gate["data"].startswith("leave-one-out KB paraphrases (24 KB texts")
    assert gate["fp32"]["n_in_scope"] == 24 and gate["fp32"]["n_out_of_scope"] > 500    # the shipped general set
    assert gate["top1_drop"] <= 0.005 and gate["handoff_recall_drop"] <= 0.01


def test_the_gate_refuses_an_int8_model_that_loses_retrieval(small, tmp_path, monkeypatch):
    from lepton_apps.export import ExportError
    from lepton_apps.support import export as support_export

    # a broken quantisation: the word-embedding table replaced by noise (every token's vector wrong)
    def broken(fp32, workdir):
        import onnx
        from onnx import numpy_helper

        model = onnx.load_from_string(fp32)
        rng = np.random.default_rng(0)
        for init in model.graph.initializer:
            arr = numpy_helper.to_array(init)
            if arr.dtype == np.float32 and arr.ndim == 2 and arr.shape[0] > 1000:
                init.CopyFrom(numpy_helper.from_array(rng.standard_normal(arr.shape).astype(np.float32), init.name))
        return model.SerializeToString()

    monkeypatch.setattr(support_export, "quantize_int8", broken)
    with pytest.raises(ExportError, match=r"misses the accuracy gate: retrieval top-1 ([\d.]+) against ([\d.]+) for "
                                          r"fp32, a drop of (0\.[1-9]\d*)") as info:
        support_export.export(small, tmp_path / "int8", quantize="int8")
    assert "cosine to the fp32 embeddings mean" in str(info.value) and "nothing was written" in str(info.value)
    assert not (tmp_path / "int8").exists()


def test_cli_export(small, tmp_path, capsys):
    from lepton_apps.cli import main
    from lepton_apps.export import load_export

    out = tmp_path / "cli"
    assert main(["support", "export", str(small), "--format", "onnx", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "(fp32 ONNX): max abs difference to PyTorch" in said and "heads: intent, sentiment, faq" in said
    assert load_export(out).card["check"]["rows"] == 24 and (out / "tokenizer" / "tokenizer.json").is_file()
    assert main(["support", "export", str(small), "--out", str(out)]) == 2     # exists: not overwritten silently
    assert "already exists" in capsys.readouterr().err
    assert main(["support", "export", str(small), "--format", "tflite", "--out", str(tmp_path / "t")]) == 2
    assert "unknown export format 'tflite'" in capsys.readouterr().err
    assert main(["support", "export", str(small), "--out", str(tmp_path / "q"), "--quantize", "int4"]) == 2
    assert "unknown --quantize 'int4'" in capsys.readouterr().err and not (tmp_path / "q").exists()
    code = main(["support", "export", str(small), "--out", str(tmp_path / "q"), "--quantize", "int8",
                 "--max-top1-drop", "0.99", "--max-handoff-recall-drop", "0.99"])
    said = capsys.readouterr().out
    assert code == 0 and "int8 gate passed: top-1" in said and "cosine to fp32 mean" in said
    assert load_export(tmp_path / "q").card["gate"]["max_top1_drop"] == 0.99
