"""Export a support bundle's sentence encoder and heads to ONNX (fp32, or int8 behind a retrieval gate).

The folder holds ``model.onnx`` — the encoder graph: int64 ``input_ids``, ``attention_mask`` (and
``token_type_ids`` when the tokenizer makes them), batch and length dynamic, to ``embedding``
(batch, dim), the pooled (mean over the mask, or CLS as the bundle's encoder pools) and L2-normalised
sentence embedding the template retrieves with — the tokenizer files under ``tokenizer/`` and one
small ONNX graph per head, ``heads/<name>.onnx``: ``embedding`` (batch, dim) -> ``probabilities``
(batch, classes), softmax inside, the label names in the card (intent, sentiment — the escalation
head, and the FAQ classifier whose classes are the KB rows). The encoder graph is the one the
template's ONNX backend runs (:func:`lepton_apps.support.encoder._export_onnx`, the last hidden
state) with the pooling and normalisation appended as ONNX nodes. Before tokenising, a model's
prompt (the multilingual E5 encoder's ``"query: "``) goes in front of every text: the card records it.

Check (fp32): the embeddings of the bundle's own KB texts (``kb_texts.json``) from ONNX Runtime
against the PyTorch encoder, and each head's probabilities on those PyTorch embeddings. Tolerance
1e-5: the same float32 arithmetic in another order moves unit-length embeddings by float32 rounding
(measured 1.9e-7 on the demo MiniLM bundle's 265 KB texts, heads 4.5e-7 at most),
while a missing prompt, a wrong pooling or a missing normalisation moves them by 1e-2 or more.

int8: ONNX Runtime dynamic quantisation (``quantize_dynamic``: int8 weights of MatMul / Gemm,
activations quantised per batch at run time) of the encoder — or, with ``int8_method="static"``, static QDQ
quantisation with activation ranges calibrated on KB texts; the heads stay fp32 (they are tiny).
The gate compares the assistant answering with int8 query embeddings against the same assistant with
the fp32 ONNX encoder (the KB vectors stay those of the bundle): on the bundle's held-out questions
(``eval_details.parquet``: question, gold faq_id, '' = out of scope) retrieval top-1 may drop by at
most ``max_top1_drop`` (0.5 point) and hand-off recall by at most ``max_handoff_recall_drop``
(1 point). What the bundle lacks is filled in: without in-scope held-out questions, top-1 on
leave-one-out KB paraphrases (each KB text retrieved densely among the other texts; right when the
nearest other text belongs to the same FAQ); without out-of-scope ones, hand-off recall on the general
out-of-scope questions shipped with the template. The card's ``gate.data`` says which. The cosine between
int8 and fp32 embeddings (mean / min) is recorded. A miss is refused with the numbers and nothing is
written.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lepton_apps.errors import require
from lepton_apps.export import ExportError, inference_session, write_export

TOLERANCE = 1e-5
MAX_TOP1_DROP = 0.005
MAX_HANDOFF_RECALL_DROP = 0.01
OPSET = 17
OUTPUT_NAME = "embedding"
HEADS = ("intent", "sentiment", "faq")


# --------------------------------------------------------------------------- conversion

def _append_pooling(model, pooling: str):
    """Return the encoder graph ``model`` (output ``hidden``) with pooling + L2 normalisation appended as nodes."""
    onnx = require("onnx", feature="ONNX export", extra="fast")
    from onnx import TensorProto, helper

    g = model.graph
    const = lambda name, values, dtype=TensorProto.INT64: g.initializer.append(  # noqa: E731
        helper.make_tensor(name, dtype, [len(values)], values))
    const("pool_axis_tokens", [1])
    const("pool_axis_last", [-1])
    const("pool_eps_count", [1e-9], TensorProto.FLOAT)
    const("pool_eps_norm", [1e-12], TensorProto.FLOAT)
    nodes = []
    if pooling == "cls":
        g.initializer.append(helper.make_tensor("pool_zero", TensorProto.INT64, [], [0]))
        nodes.append(helper.make_node("Gather", ["hidden", "pool_zero"], ["pooled"], axis=1))
    else:
        nodes += [helper.make_node("Cast", ["attention_mask"], ["pool_mask"], to=TensorProto.FLOAT),
                  helper.make_node("Unsqueeze", ["pool_mask", "pool_axis_last"], ["pool_mask3"]),
                  helper.make_node("Mul", ["hidden", "pool_mask3"], ["pool_masked"]),
                  helper.make_node("ReduceSum", ["pool_masked", "pool_axis_tokens"], ["pool_sum"], keepdims=0),
                  helper.make_node("ReduceSum", ["pool_mask3", "pool_axis_tokens"], ["pool_count"], keepdims=0),
                  helper.make_node("Max", ["pool_count", "pool_eps_count"], ["pool_count_c"]),
                  helper.make_node("Div", ["pool_sum", "pool_count_c"], ["pooled"])]
    nodes += [helper.make_node("Mul", ["pooled", "pooled"], ["pool_sq"]),
              helper.make_node("ReduceSum", ["pool_sq", "pool_axis_last"], ["pool_sqsum"], keepdims=1),
              helper.make_node("Sqrt", ["pool_sqsum"], ["pool_norm"]),
              helper.make_node("Max", ["pool_norm", "pool_eps_norm"], ["pool_norm_c"]),
              helper.make_node("Div", ["pooled", "pool_norm_c"], [OUTPUT_NAME])]
    g.node.extend(nodes)
    dim = None
    for out in g.output:
        if out.name == "hidden":
            dim = out.type.tensor_type.shape.dim[2].dim_value or None
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", dim]))
    onnx.checker.check_model(model)
    return model


def convert_encoder(encoder) -> bytes:
    """Return the ONNX bytes of ``encoder`` (a SentenceEncoder): token inputs -> pooled, normalised ``embedding``."""
    onnx = require("onnx", feature="ONNX export", extra="fast")
    from .encoder import _ONNX_INPUTS, _export_onnx

    inputs = [k for k in _ONNX_INPUTS if k in encoder.tokenizer.model_input_names]
    if "attention_mask" not in inputs:
        raise ExportError(f"the encoder's tokenizer gives no attention_mask (inputs: {', '.join(inputs)})",
                          where=str(encoder.path), fix="export an encoder whose tokenizer returns an attention mask")
    with tempfile.TemporaryDirectory(prefix="lepton-support-export-") as tmp:
        path = Path(tmp) / "hidden.onnx"
        _export_onnx(encoder.model, inputs, path)
        model = onnx.load(str(path))
    return _append_pooling(model, encoder.pooling).SerializeToString()


def convert_head(head) -> bytes:
    """Return the ONNX bytes of an EmbeddingHead: ``embedding`` (batch, dim) -> softmax ``probabilities``."""
    import io
    import warnings

    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return torch.softmax(self.inner(x).float(), dim=-1)

    module = Probabilities(copy.deepcopy(head).float().cpu().eval())
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros((2, head.dim)),), buf, input_names=[OUTPUT_NAME],
                          output_names=["probabilities"], dynamic_axes={OUTPUT_NAME: {0: "batch"},
                                                                       "probabilities": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return buf.getvalue()


RERANKER_FILE = "reranker.onnx"
RERANKER_CHECK_PAIRS = 256


def reranker_check_pairs(assistant) -> tuple[list[str], list[str]]:
    """Return (queries, FAQ documents) to compare the exported re-ranker with PyTorch: KB texts, each with its own
    FAQ and with the next FAQ (a right and a wrong pair), at most :data:`RERANKER_CHECK_PAIRS` pairs."""
    from .index import Hit

    index = assistant.index
    queries, docs = [], []
    for i, text in enumerate(index.texts[:RERANKER_CHECK_PAIRS // 2]):
        for row in (int(index.owner[i]), (int(index.owner[i]) + 1) % max(index.n_rows, 1)):
            queries.append(text)
            docs.append(assistant.document(text, Hit(row, 0.0, 0.0, 0.0, 0.0, int(index.starts[row]))))
    return queries, docs


def check_reranker(assistant, data: bytes, tolerance: float, out) -> dict:
    """Return the card entry of the exported re-ranker after checking its probabilities against PyTorch's on
    :func:`reranker_check_pairs` (ExportError beyond ``tolerance``)."""
    rr = assistant.reranker
    queries, docs = reranker_check_pairs(assistant)
    reference = rr.probabilities(queries, docs)
    session = inference_session(data)
    enc = rr._tokenize(queries, docs, tensors="np")
    logits = session.run(None, {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()})[0].reshape(-1)
    diff = float(np.abs(1.0 / (1.0 + np.exp(-logits.astype(np.float64))) - reference).max())
    if diff > tolerance:
        raise ExportError(f"the exported re-ranker's probabilities differ from PyTorch's by up to {diff:.3g}, more "
                          f"than the tolerance {tolerance:.3g}; nothing was written", where=str(out),
                          fix="report this conversion problem; keep using the source bundle")
    return {"file": RERANKER_FILE, "precision": "fp32 (in an int8 export too: only the encoder is quantised, behind "
                                                "the retrieval gate)",
            "inputs": [i.name for i in session.get_inputs()], "output": "logit [batch]; P = sigmoid(logit)",
            "pair": "tokenizer/ on (question, FAQ document), truncating the document to "
                    f"{rr.max_length} tokens; document = FAQ question | best-matched KB text",
            "check": {"data": f"{len(queries)} (KB text, FAQ) pairs, right and wrong", "tolerance": tolerance,
                      "max_abs_diff_probability": diff}}


INT8_METHODS = ("dynamic", "static")
CALIBRATION_TEXTS = 256


def quantize_int8_static(fp32: bytes, encoder, texts: list[str], workdir: Path) -> bytes:
    """Return the static int8 (QDQ: int8 per-channel MatMul / Gemm weights, int8 activations with MinMax ranges
    from ``texts`` tokenised as ``encoder.encode`` does) ONNX model of the fp32 encoder ``fp32``."""
    ort_q = require("onnxruntime.quantization", feature="int8 quantisation of the support encoder", extra="fast")

    class Texts(ort_q.CalibrationDataReader):
        def __init__(self):
            feeds = []
            for _, tokens, mask in encoder._batches(list(texts), 32, encoder.default_batch_tokens):
                feeds.append({"input_ids": tokens, "attention_mask": mask, "token_type_ids": np.zeros_like(tokens)})
            names = {i.name for i in inference_session(fp32).get_inputs()}
            self.feeds = iter([{k: v for k, v in f.items() if k in names} for f in feeds])

        def get_next(self):
            return next(self.feeds, None)

    src, dst = workdir / "fp32-static.onnx", workdir / "int8-static.onnx"
    src.write_bytes(fp32)
    ort_q.quantize_static(str(src), str(dst), Texts(), quant_format=ort_q.QuantFormat.QDQ, per_channel=True,
                          weight_type=ort_q.QuantType.QInt8, activation_type=ort_q.QuantType.QInt8,
                          op_types_to_quantize=["MatMul", "Gemm"], calibrate_method=ort_q.CalibrationMethod.MinMax)
    return dst.read_bytes()


def quantize_int8(fp32: bytes, workdir: Path) -> bytes:
    """Return the dynamic int8 (MatMul / Gemm weights) ONNX model of the fp32 encoder ``fp32``."""
    ort_q = require("onnxruntime.quantization", feature="int8 quantisation of the support encoder", extra="fast")
    src, dst = workdir / "fp32.onnx", workdir / "int8.onnx"
    src.write_bytes(fp32)
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT logs a "consider pre-processing" note to the root logger on every call
    try:
        ort_q.quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"],
                               weight_type=ort_q.QuantType.QInt8)
    finally:
        root.setLevel(level)
    return dst.read_bytes()


# --------------------------------------------------------------------------- running



def encode_with_session(session, encoder, texts: list[str]) -> np.ndarray:
    """Return the (n, dim) embeddings of ``texts`` from an encoder ONNX ``session``, tokenised (prompt included)
    and batched exactly as ``encoder.encode`` does."""
    names = {i.name for i in session.get_inputs()}
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    for idx, tokens, mask in encoder._batches(list(texts), encoder.default_batch_size, encoder.default_batch_tokens):
        feed = {"input_ids": tokens, "attention_mask": mask, "token_type_ids": np.zeros_like(tokens)}
        out[idx] = session.run([OUTPUT_NAME], {k: v for k, v in feed.items() if k in names})[0]
    return out


class _SessionEncoder:
    """Stands in for the assistant's encoder: ``encode`` runs an ONNX session (for the int8 gate)."""

    def __init__(self, session, encoder):
        self.session, self.encoder = session, encoder

    def encode(self, texts, batch_size=None, progress=False, **_):
        return encode_with_session(self.session, self.encoder, [t if isinstance(t, str) else str(t) for t in texts])


def _heads(assistant) -> dict[str, tuple[Any, list[str]]]:
    """Return ``{head name: (EmbeddingHead, label names)}`` of the heads the assistant has."""
    out = {}
    if assistant.intent_head is not None and assistant.intent_model is None:
        out["intent"] = (assistant.intent_head, list(assistant.intent_labels))
    if assistant.sentiment_head is not None:
        out["sentiment"] = (assistant.sentiment_head, list(assistant.sentiment_labels))
    if assistant.faq_head is not None:
        out["faq"] = (assistant.faq_head, [str(i) for i in assistant.kb["id"]])
    return out


# --------------------------------------------------------------------------- the int8 gate

def _held_out(bundle) -> Any:
    """Return the bundle's held-out questions (question, faq_id; '' = out of scope) from eval_details.parquet, or None."""
    if not bundle.has("eval_details.parquet"):
        return None
    import pandas as pd

    details = pd.read_parquet(bundle.path / "eval_details.parquet")
    if not {"question", "faq_id"} <= set(details.columns) or details.empty:
        return None
    q = details[["question", "faq_id"]].copy()
    q["faq_id"] = q["faq_id"].fillna("").astype(str)
    return q.reset_index(drop=True)


def retrieval_metrics(assistant, questions) -> dict[str, float]:
    """Return retrieval top-1 (in-scope questions) and hand-off recall (out-of-scope ones) of ``assistant``."""
    replies = assistant.answer_batch(questions["question"].tolist())
    gold = questions["faq_id"].tolist()
    inscope = np.array([bool(g) for g in gold])
    top1 = np.array([bool(r.sources) and r.sources[0].faq_id == g for r, g in zip(replies, gold)])
    handoff = np.array([r.handoff for r in replies])
    return {"top1": float(top1[inscope].mean()) if inscope.any() else float("nan"),
            "handoff_recall": float(handoff[~inscope].mean()) if (~inscope).any() else float("nan"),
            "n_in_scope": int(inscope.sum()), "n_out_of_scope": int((~inscope).sum())}


def _leave_one_out_top1(kb_emb: np.ndarray, owner: np.ndarray, query_emb: np.ndarray) -> float:
    """Share of KB texts whose nearest other KB text (dense, cosine) belongs to the same FAQ, among the texts
    whose FAQ has another text."""
    sims = query_emb @ kb_emb.T
    np.fill_diagonal(sims, -np.inf)
    has_pair = np.array([(owner == o).sum() > 1 for o in owner])
    if not has_pair.any():
        return float("nan")
    return float((owner[sims.argmax(1)] == owner)[has_pair].mean())


def _gate_metrics(assistant, session, bundle) -> tuple[dict[str, float], str]:
    """Return (top1 / handoff_recall of the assistant answering with ``session``'s query embeddings, data).

    Held-out questions when the bundle keeps them; what they lack — in-scope questions or out-of-scope
    ones — comes from leave-one-out KB paraphrases (top-1) or the shipped general out-of-scope set (recall)."""
    import pandas as pd

    from .calibration import general_oos_questions

    enc = assistant.encoder
    stand_in = copy.copy(assistant)
    stand_in.encoder = _SessionEncoder(session, enc)
    held = _held_out(bundle)
    parts = []
    if held is not None:
        parts.append(f"the bundle's held-out questions (eval_details.parquet: {len(held):,} questions)")
    else:
        held = pd.DataFrame({"question": [], "faq_id": []})
    if not (held["faq_id"] == "").any():
        oos = general_oos_questions()
        held = pd.concat([held, pd.DataFrame({"question": oos, "faq_id": ""})], ignore_index=True)
        parts.append(f"the {len(oos):,} general out-of-scope questions shipped with the template (hand-off recall)")
    m = retrieval_metrics(stand_in, held)
    if not m["n_in_scope"]:
        texts = list(assistant.index.texts)
        owner = np.asarray(assistant.index.owner)
        m["top1"] = _leave_one_out_top1(assistant.index.embeddings, owner, encode_with_session(session, enc, texts))
        m["n_in_scope"] = len(texts)
        parts.insert(0, f"leave-one-out KB paraphrases ({len(texts):,} KB texts, each retrieved densely among the "
                        "others: top-1)")
    return m, " and ".join(parts)


# --------------------------------------------------------------------------- export

def backend_export(bundle: str | Path, out: str | Path, precision: str) -> Path:
    """Write the export the ONNX backend of :meth:`SupportAssistant.load` uses (the domain's ``backend_export``,
    cached by :func:`lepton_apps.export.cached_export`): :func:`export` with its checks and int8 gate."""
    return export(bundle, out, quantize=precision, overwrite=True)


def export(bundle: str | Path, out: str | Path, *, quantize: str | None = None,
           max_top1_drop: float = MAX_TOP1_DROP, max_handoff_recall_drop: float = MAX_HANDOFF_RECALL_DROP,
           int8_method: str = "dynamic", tolerance: float = TOLERANCE, overwrite: bool = False, home=None) -> Path:
    """Export a support bundle's encoder (+ tokenizer, + heads) to an ONNX export folder (fp32, or int8 with
    ``quantize="int8"``); return its path.

    Raises ExportError when the fp32 embeddings or head probabilities differ from PyTorch's by more than
    ``tolerance``, or when the int8 encoder loses more than ``max_top1_drop`` retrieval top-1 or
    ``max_handoff_recall_drop`` hand-off recall against fp32 (nothing written; the message has the numbers).
    ``int8_method``: "dynamic" (default: activations quantised per batch at run time) or "static" (activation
    ranges calibrated on the first KB texts); both pass through the same gate. Dynamic is the default by
    measurement (bench/export_bench.py, 2-core AVX2 CPU): static retrieved as well or a little better (demo top-1
    0.879 both, hand-off recall 0.90 vs 0.80; CLINC150 top-1 0.950 vs 0.946) but ran at 0.65x the fp32 ONNX
    encoder, dynamic at 1.36-1.38x — a quantised model slower than fp32 has no use here.
    """
    from lepton_apps.bundle import load_bundle
    from lepton_apps.registry import Registry

    from .predict import DOMAIN, SupportAssistant

    if quantize not in (None, "none", "fp32", "int8"):
        raise ExportError(f"unknown --quantize {quantize!r}", where="support export", fix="use --quantize int8, or leave it out")
    for name, value in (("max_top1_drop", max_top1_drop), ("max_handoff_recall_drop", max_handoff_recall_drop)):
        if not 0 <= value < 1:
            raise ExportError(f"{name} must be in [0, 1), got {value}", where=f"--{name.replace('_', '-')}",
                              fix="pass a share such as 0.005 (half a point)")
    int8 = quantize == "int8"
    if int8_method not in INT8_METHODS:
        raise ExportError(f"unknown int8 method {int8_method!r}", where="--int8-method",
                          fix=f"use one of {', '.join(INT8_METHODS)}")
    path = Path(bundle) if Path(bundle).is_dir() else Registry(home).resolve(str(bundle), domain=DOMAIN)
    source = load_bundle(path, domain=DOMAIN)
    assistant = SupportAssistant.load(path, device="cpu", backend="torch")
    enc = assistant.encoder
    texts = list(assistant.index.texts)
    reference = enc.encode(texts)
    heads = _heads(assistant)
    fp32 = convert_encoder(enc)
    head_bytes = {name: convert_head(head) for name, (head, _) in heads.items()}
    head_ref = {name: head.predict_proba(reference) for name, (head, _) in heads.items()}
    check_data = f"the bundle's {len(texts):,} KB texts (kb_texts.json)"
    card: dict[str, Any] = {
        "encoder": {"name": enc_name(source), "pooling": enc.pooling, "normalised": "L2", "dim": enc.dim,
                    "max_length": enc.max_length, "prompt": enc.prompt,
                    "inputs": [i for i in ("input_ids", "attention_mask", "token_type_ids")
                               if i in enc.tokenizer.model_input_names]},
        "preprocessing": {
            "before_the_graph": (f"put the prompt {enc.prompt!r} before every text, " if enc.prompt else "")
            + f"tokenise with tokenizer/ (truncation to {enc.max_length} tokens, padding; int64 ids and mask; "
              "token_type_ids all 0 where the graph takes them)",
            "in_the_graph": f"transformer, {'CLS token' if enc.pooling == 'cls' else 'mean over the attention mask'} "
                            "pooling, L2 normalisation -> 'embedding'",
            "retrieval": "cosine = dot product with the KB embeddings of the source bundle (kb_embeddings.npy)"},
        "heads": {name: {"file": f"heads/{name}.onnx", "input": f"{OUTPUT_NAME} [batch, {enc.dim}]",
                         "output": "probabilities [batch, classes] (softmax)", "labels": labels,
                         **({"escalation": "P(escalate) = 1 - P(neutral); escalate at or above the threshold",
                             "threshold": float(assistant.settings.escalation_threshold)} if name == "sentiment" else {})}
                  for name, (_, labels) in heads.items()},
        "not_exported": (["intent: a fine-tuned sequence classifier (a second transformer), not an embedding head"]
                         if assistant.intent_model is not None else []),
        "converter": f"torch.onnx.export (TorchScript exporter, opset {OPSET}) + pooling / normalisation nodes",
    }
    head_sessions = {name: inference_session(b) for name, b in head_bytes.items()}
    head_diff = {name: float(np.abs(head_sessions[name].run(None, {OUTPUT_NAME: reference})[0] - head_ref[name]).max())
                 for name in heads}
    worst_head = max(head_diff.values(), default=0.0)
    if worst_head > tolerance:
        raise ExportError(f"the exported heads' probabilities differ from PyTorch's by up to {worst_head:.3g} "
                          f"({', '.join(f'{k} {v:.3g}' for k, v in head_diff.items())}), more than the tolerance "
                          f"{tolerance:.3g}; nothing was written", where=str(out),
                          fix="report this conversion problem; keep using the source bundle")
    card["heads_check"] = {"data": f"PyTorch embeddings of {check_data}", "tolerance": tolerance,
                           "max_abs_diff_per_head": head_diff}
    with tempfile.TemporaryDirectory(prefix="lepton-support-export-") as tmp:
        tmp = Path(tmp)
        files = {}
        enc.tokenizer.save_pretrained(tmp / "tokenizer")
        for f in sorted((tmp / "tokenizer").rglob("*")):
            if f.is_file():
                files["tokenizer/" + f.relative_to(tmp / "tokenizer").as_posix()] = f
        for name, data in head_bytes.items():
            (tmp / f"{name}.onnx").write_bytes(data)
            files[f"heads/{name}.onnx"] = tmp / f"{name}.onnx"
        if assistant.reranker is not None and assistant.settings.rerank_k:
            data = assistant.reranker.to_onnx()
            card["reranker"] = check_reranker(assistant, data, tolerance, out)
            (tmp / RERANKER_FILE).write_bytes(data)
            files[RERANKER_FILE] = tmp / RERANKER_FILE
        inputs = lambda session: {OUTPUT_NAME: encode_with_session(session, enc, texts)}  # noqa: E731
        if not int8:
            return write_export(out, model=fp32, source=source, precision="fp32", inputs=inputs,
                                reference={OUTPUT_NAME: reference}, tolerance=tolerance, check_data=check_data,
                                card=card, files=files, overwrite=overwrite)
        fp32_session = inference_session(fp32)
        fp32_emb = encode_with_session(fp32_session, enc, texts)
        fp32_diff = float(np.abs(fp32_emb - reference).max())
        if fp32_diff > tolerance:
            raise ExportError(f"the fp32 ONNX encoder differs from PyTorch by up to {fp32_diff:.3g}, more than the "
                              f"tolerance {tolerance:.3g}, so it cannot be quantised; nothing was written",
                              where=str(out), fix="report this conversion problem; keep using the source bundle")
        if int8_method == "static":
            int8_model = quantize_int8_static(fp32, enc, texts[:CALIBRATION_TEXTS], tmp)
        else:
            int8_model = quantize_int8(fp32, tmp)
        int8_session = inference_session(int8_model)
        int8_emb = encode_with_session(int8_session, enc, texts)
        cos = (int8_emb * fp32_emb).sum(1) / np.maximum(np.linalg.norm(int8_emb, axis=1) *
                                                        np.linalg.norm(fp32_emb, axis=1), 1e-12)
        m32, gate_data = _gate_metrics(assistant, fp32_session, source)
        m8, _ = _gate_metrics(assistant, int8_session, source)
        top1_drop = m32["top1"] - m8["top1"]
        recall_drop = m32["handoff_recall"] - m8["handoff_recall"]
        gate = {"data": gate_data, "fp32": m32, "int8": m8, "top1_drop": top1_drop, "max_top1_drop": max_top1_drop,
                "handoff_recall_drop": recall_drop, "max_handoff_recall_drop": max_handoff_recall_drop,
                "cosine_to_fp32": {"mean": float(cos.mean()), "min": float(cos.min()), "data": check_data}}
        misses = []
        if not top1_drop <= max_top1_drop:  # NaN (no in-scope question) counts as a miss
            misses.append(f"retrieval top-1 {m8['top1']:.4f} against {m32['top1']:.4f} for fp32, a drop of "
                          f"{top1_drop:.4f}, {top1_drop - max_top1_drop:.4f} more than the allowed {max_top1_drop:.4f}")
        if not recall_drop <= max_handoff_recall_drop:
            misses.append(f"hand-off recall {m8['handoff_recall']:.4f} against {m32['handoff_recall']:.4f} for fp32, a "
                          f"drop of {recall_drop:.4f}, {recall_drop - max_handoff_recall_drop:.4f} more than the allowed "
                          f"{max_handoff_recall_drop:.4f}")
        if misses:
            raise ExportError(
                f"the int8 encoder misses the accuracy gate: {'; '.join(misses)} (int8 / fp32: top-1 {m8['top1']:.4f} / "
                f"{m32['top1']:.4f}, hand-off recall {m8['handoff_recall']:.4f} / {m32['handoff_recall']:.4f}, on "
                f"{gate_data}; cosine to the fp32 embeddings mean {cos.mean():.4f}, min {cos.min():.4f}); "
                "nothing was written",
                where=str(out), fix="export fp32 instead (the same command without --quantize)")
        gate["passed"] = True
        card["quantization"] = ({"tool": "onnxruntime.quantization.quantize_dynamic", "method": "dynamic",
                                 "op_types": ["MatMul", "Gemm"], "weights": "int8 (QInt8)",
                                 "activations": "uint8, quantised per batch at run time", "heads": "fp32 (unchanged)"}
                                if int8_method == "dynamic" else
                                {"tool": "onnxruntime.quantization.quantize_static", "method": "static", "format": "QDQ",
                                 "op_types": ["MatMul", "Gemm"], "weights": "int8, per channel",
                                 "activations": "int8, MinMax ranges", "heads": "fp32 (unchanged)",
                                 "calibration": f"the first {min(len(texts), CALIBRATION_TEXTS)} KB texts"})
        card["gate"] = gate
        # for int8 the retrieval gate is the criterion; the max abs difference to PyTorch is recorded, not bounded
        return write_export(out, model=int8_model, source=source, precision="int8", inputs=inputs,
                            reference={OUTPUT_NAME: reference}, tolerance=2.0, check_data=check_data, card=card,
                            files=files, overwrite=overwrite)


def enc_name(bundle) -> str:
    """Return the source bundle's encoder name (or 'stored in the bundle (fine-tuned from NAME)')."""
    cfg = bundle.load_json("encoder.json")
    return f"stored in the bundle (fine-tuned from {cfg.get('name')})" if cfg.get("stored_in_bundle") else str(cfg["name"])
