"""SupportAssistant: load a bundle, answer questions with sources, confidence, hand-off and escalation.

    bot = SupportAssistant.load("support:latest")
    reply = bot.answer("my card was stolen")
    reply.answer, reply.faq_id, reply.confidence, reply.handoff, reply.intent, reply.escalate
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd

from pydantic import BaseModel, ConfigDict, Field

from lepton_apps.predictor import Evaluation, Explanation, MonitorWindow, PredictRequest, Predictor, Result

from .config import HANDOFF_MESSAGE, HANDOFF_MESSAGES, Settings
from .index import FaqIndex, Hit, rank_score, top_gap
from .model import ConfidenceModel, EmbeddingHead, classify_texts, escalate
from .text import BINARY_DATA, EMPTY_QUESTION, NO_WORDS, UNREADABLE_TEXT, clean_question, detect_language

DOMAIN = "support"


class Source(BaseModel):
    """One retrieved FAQ: id, question, the KB text that matched best, and the score parts."""

    model_config = ConfigDict(extra="forbid")

    faq_id: str
    question: str
    matched_text: str
    score: float
    dense: float
    lexical: float
    answer: str
    url: str = ""
    classifier: float = 0.0
    rerank: float | None = None   # the second stage's P(this FAQ answers the question), when the bundle has one


class Answer(Result):
    """The assistant's reply to one customer message.

    ``error`` is set (and ``handoff`` True) when the message is not a question at all: empty or not
    readable text. A message without words (only emoji), a low-confidence or an ambiguous question is
    a hand-off with its ``handoff_reason``, not an error.

    ``handoff_reason`` and ``escalation_reason`` are English sentences (logs, the API, the audit log);
    ``handoff_code`` (one of :data:`HANDOFF_CODES`) with ``handoff_detail``, and ``escalation_detail``,
    carry the same facts as data, for a page or a client that words them in another language.
    """

    question: str
    answer: str
    faq_id: str | None
    confidence: float
    handoff: bool
    handoff_reason: str | None
    sources: list[Source]
    handoff_code: str | None = None                                  # one of HANDOFF_CODES; None when answered
    handoff_detail: dict[str, Any] = Field(default_factory=dict)    # the numbers / ids HANDOFF_CODES names
    intent: str | None = None
    intent_confidence: float | None = None
    team: str | None = None
    sentiment: str | None = None
    sentiment_confidence: float | None = None
    escalation_score: float | None = None
    escalate: bool = False
    escalation_reason: str | None = None
    escalation_detail: dict[str, Any] = Field(default_factory=dict)  # {sentiment, p_escalate, threshold} when escalated
    truncated: bool = False
    language: str | None = None  # detected from the message: zh, en, ja, ko, ... or und (apps/support/text.py)

    audit_private: ClassVar[tuple[str, ...]] = ("question",)  # the customer's own words


class SupportExplanation(Explanation):
    """Why the assistant answered as it did: the reply, how the score is fused, the confidence
    features, the thresholds and each source's score parts."""

    reply: Answer
    fusion: str
    confidence_features: dict[str, float]
    threshold: float
    ambiguity_margin: float
    index: str
    sources: list[Source]


class SupportRequest(PredictRequest):
    """API request body: ``{"questions": ["my card was stolen", "..."]}`` (1 to 256 questions)."""

    questions: list[str] = Field(..., min_length=1, max_length=256)

    def to_items(self) -> tuple[list[Any], dict[str, Any]]:
        """Return the questions for :meth:`SupportAssistant.predict`."""
        return list(self.questions), {}


# Answer.handoff_code -> what it means and the keys of Answer.handoff_detail it comes with.
HANDOFF_CODES = {
    "empty_question": "the message is empty (nothing but spaces or control characters); no detail",
    "binary_data": "the message is binary data, not text; no detail",
    "unreadable_text": "the message is mostly unprintable characters (binary data or an unknown encoding); no detail",
    "no_words": "the message holds no letters or digits (e.g. only emoji or punctuation); no detail",
    "empty_kb": "the knowledge base has no entries to search; no detail",
    "low_confidence": "the best match's confidence is under the hand-off threshold; detail: confidence, threshold",
    "ambiguous": "the top two FAQs score almost equally; detail: first, second (FAQ ids), first_score, "
                 "second_score, margin (the bundle's ambiguity margin)",
}
# clean_question's problem -> its hand-off code
PROBLEM_CODES = {EMPTY_QUESTION: "empty_question", BINARY_DATA: "binary_data", UNREADABLE_TEXT: "unreadable_text",
                 NO_WORDS: "no_words"}


class SupportAssistant(Predictor):
    """Answers customer questions from a knowledge base; built by ``train`` or :meth:`load`
    (the core :class:`~lepton_apps.predictor.Predictor`; ``answer`` / ``answer_batch`` are the domain verbs)."""

    domain = DOMAIN
    result_type = Answer
    request_schema = SupportRequest
    chunk_size = 1_000

    def __init__(self, encoder, kb: pd.DataFrame, index: FaqIndex, confidence: ConfidenceModel, settings: Settings,
                 intent_head: EmbeddingHead | None = None, intent_labels: Sequence[str] = (),
                 sentiment_head: EmbeddingHead | None = None, sentiment_labels: Sequence[str] = (),
                 version: str = "", batch_size: int | None = None, intent_model: tuple | None = None,
                 faq_head: EmbeddingHead | None = None, calibration: dict | None = None, reranker=None,
                 distance=None):
        self.encoder = encoder
        self.reranker = reranker   # reranker.Reranker (the second stage) or None
        self.distance = distance   # distance.DistanceScorer (Mahalanobis evidence for the hand-off) or None
        self.kb = kb.reset_index(drop=True)
        self.index = index
        self.confidence = confidence
        self.settings = settings
        self.intent_head, self.intent_labels = intent_head, list(intent_labels)
        self.sentiment_head, self.sentiment_labels = sentiment_head, list(sentiment_labels)
        self.bundle_version = version
        self.backend_note: str | None = None  # why the asked backend is not the one answering (int8 refused)
        self.batch_size = batch_size
        self._ids = self.kb["id"].tolist()
        # plain per-row tuples: building a reply's sources from them costs microseconds, pandas rows milliseconds
        url = self.kb["url"] if "url" in self.kb.columns else pd.Series([""] * len(self.kb))
        self._rows = [(str(i), str(q), str(a), str(u or "")) for i, q, a, u in
                      zip(self.kb["id"], self.kb["question"], self.kb["answer"], url.fillna(""))]
        self.intent_model = intent_model  # (AutoModelForSequenceClassification, tokenizer, labels) or None
        self.faq_head = faq_head  # linear classifier over the KB rows (trained on the KB's paraphrases) or None
        self.calibration = calibration or {}   # how the hand-off threshold was chosen (retrieval.json)
        if intent_model is not None:
            self.intent_labels = list(intent_model[2])
        import threading

        self._intent_lock = threading.Lock()

    # ------------------------------------------------------------------------------ loading
    @classmethod
    def load(cls, ref: str | Path, *, home: str | Path | None = None, device: str = "auto", quantize: str = "none",
             backend: str = "auto", export: str | Path | None = None, registry=None) -> SupportAssistant:
        """Return the assistant stored in a bundle (a path, a registry name or ``support:latest``).

        ``backend``: how questions are encoded — "torch" (PyTorch), "onnx" (ONNX Runtime fp32: the same vectors
        within 1e-5, faster on a CPU), "int8" (the dynamic int8 export of ``lepton-apps support export``, only
        where it passed the retrieval gate for this bundle — else fp32 ONNX with a warning saying by how much it
        missed; built on first use into ``$LEPTON_CACHE/exports``) or "auto" (onnx on a CPU with onnxruntime,
        else torch). ``export``: an export folder of this bundle to encode with (its precision decides).
        The backend that encodes ends ``model_version`` (``…/onnx-int8``). ``quantize="int8"`` is the older
        PyTorch dynamic int8 (lossier: cosine to fp32 ~0.95; prefer ``backend="int8"``).
        """
        from lepton_apps.bundle import load_bundle
        from lepton_apps.registry import Registry

        from .encoder import SentenceEncoder
        from .model import head_from_state

        path = Path(ref) if Path(ref).is_dir() else (registry or Registry(home)).resolve(str(ref), domain=DOMAIN)
        bundle = load_bundle(path, domain=DOMAIN)
        settings = Settings(**bundle.load_json("retrieval.json")["settings"])
        enc_cfg = bundle.load_json("encoder.json")
        name = str(bundle.path / "encoder") if enc_cfg.get("stored_in_bundle") else enc_cfg["name"]
        from lepton_apps.device import DevicePolicy
        from lepton_apps.export import choose_backend

        on = DevicePolicy.resolve(device, "auto").device.type
        chosen = choose_backend(backend, on)
        # an export's session encodes: a folder passed in, int8 (gated), or fp32 on a GPU (ONNX Runtime's CUDA
        # provider); otherwise the encoder's own path (ONNX Runtime fp32 on a CPU, cached per weights, or PyTorch)
        via_export = export is not None or chosen == "int8" or (chosen == "onnx" and on != "cpu")
        encoder = SentenceEncoder(name, device=device, max_length=enc_cfg.get("max_length", 256), quantize=quantize,
                                  backend="torch" if via_export else chosen)
        kb = pd.DataFrame(bundle.load_json("kb.json"))
        texts = bundle.load_json("kb_texts.json")
        index = FaqIndex(bundle.load_numpy("kb_embeddings.npy"), texts["owner"], texts["texts"],
                         ann_threshold=settings.ann_threshold,
                         ann_bytes=bundle.load_numpy("faiss_hnsw.npy") if bundle.has("faiss_hnsw.npy") else None)
        confidence = ConfidenceModel.from_dict(bundle.load_json("retrieval.json")["confidence"])
        heads = {}
        for kind in ("intent", "sentiment"):
            if bundle.has(f"{kind}_head.json"):
                conf = bundle.load_json(f"{kind}_head.json")
                heads[kind] = (head_from_state(conf, bundle.load_torch(f"{kind}_head.safetensors")), conf["labels"])
        intent = heads.get("intent", (None, []))
        intent_model = None
        if bundle.has("intent_model.json"):
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            folder = str(bundle.path / "intent_model")
            model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()
            model.to(encoder.policy.device)
            intent_model = (model, AutoTokenizer.from_pretrained(folder, local_files_only=True),
                            bundle.load_json("intent_model.json")["labels"])
        sentiment = heads.get("sentiment", (None, []))
        faq_head = None
        if bundle.has("faq_classifier.json"):
            faq_head = head_from_state(bundle.load_json("faq_classifier.json"), bundle.load_torch("faq_classifier.safetensors"))
        from . import reranker as second_stage
        from .encoder import resolve_encoder_path

        rr = second_stage.load(bundle, resolve_encoder_path(enc_cfg["name"])) if settings.rerank_k else None
        distance = None
        if bundle.has("distance.safetensors"):
            from .distance import DistanceScorer

            distance = DistanceScorer.from_state(bundle.load_torch("distance.safetensors"))
        if rr is not None and chosen in ("onnx", "int8") and on == "cpu" and export is None:
            rr.use_onnx()   # ONNX Runtime fp32 as the encoder's own ONNX path (an export folder brings its own)
        bot = cls(encoder, kb, index, confidence, settings, intent[0], intent[1], sentiment[0], sentiment[1],
                  version=f"{bundle.path.name}@{bundle.metadata.get('created', '')}", intent_model=intent_model,
                  faq_head=faq_head, calibration=bundle.load_json("retrieval.json").get("calibration", {}),
                  reranker=rr, distance=distance)
        if via_export:
            bot._use_export(bundle, backend, export, "int8" if chosen == "int8" else "fp32")
        return bot

    def _use_export(self, bundle, asked: str, export: str | Path | None, precision: str) -> None:
        """Encode questions with an export of ``bundle``: the folder ``export``, or the cached ``precision`` export
        (built on first use; int8 gated — refused: the encoder's own fp32 ONNX path and a warning with the numbers)."""
        import warnings

        from lepton_apps.export import ExportError, backend_label, cached_export, export_for, providers_for

        if export is not None:
            found = export_for(bundle, export, asked)
        else:
            try:
                found = cached_export(bundle, precision)
            except ExportError as exc:
                if precision != "int8" or self.encoder.policy.device.type != "cpu":
                    raise
                self.backend_note = f"int8 refused, encoding with fp32 ONNX: {exc.what}"
                warnings.warn(self.backend_note, stacklevel=3)
                self.encoder.backend = self.encoder._choose_backend("onnx")
                return
        device = self.encoder.policy.device.type
        self.encoder.use_session(found.session(providers_for(device)), backend_label("onnx", found))
        if self.reranker is not None and (found.path / "reranker.onnx").is_file():
            from lepton_apps.export import inference_session

            self.reranker.use_session(inference_session(found.path / "reranker.onnx", providers_for(device)))

    @property
    def calibration_source(self) -> str:
        """Return in words which questions the hand-off threshold was calibrated on ('' for old bundles)."""
        return self.calibration.get("calibration_source", "")

    # ------------------------------------------------------------------------------ answering
    def answer(self, text: Any) -> Answer:
        """Return the :class:`Answer` to one customer message (never raises on odd text)."""
        return self.answer_batch([text])[0]

    def answer_batch(self, texts: Sequence[Any]) -> list[Answer]:
        """Return one :class:`Answer` per message, in order; encodes the batch in one pass."""
        return self._answer_and_embed(texts)[0]

    def _answer_and_embed(self, texts: Sequence[Any]) -> tuple[list[Answer], np.ndarray, list[int]]:
        """Return (one Answer per message, the embeddings of the messages that are questions, their positions)."""
        cleaned = [clean_question(t, self.settings.max_query_chars) for t in texts]
        live = [i for i, c in enumerate(cleaned) if c[2] is None]
        live_texts = [cleaned[i][0] for i in live]
        embs = self.encoder.encode(live_texts, batch_size=self.batch_size)
        intents = (classify_texts(self.intent_model, live_texts, self.batch_size, self._intent_lock)
                   if self.intent_model is not None else self._classify(self.intent_head, self.intent_labels, embs))
        sentiments = self._classify(self.sentiment_head, self.sentiment_labels, embs)
        faq_probs = self.faq_probabilities(embs)
        hits = self._hits(live_texts, embs, faq_probs)
        out: list[Answer] = []
        pos = {i: j for j, i in enumerate(live)}
        for i, (text, truncated, problem) in enumerate(cleaned):
            if problem is not None:
                language = detect_language(text) if text else None
                out.append(Answer(question=text, answer=self.settings.handoff_message(language), faq_id=None,
                                  confidence=0.0, handoff=True, handoff_reason=problem,
                                  handoff_code=PROBLEM_CODES[problem], sources=[], truncated=truncated,
                                  model_version=self.version, error=None if problem == NO_WORDS else problem,
                                  language=language))
                continue
            j = pos[i]
            out.append(self._decide(text, truncated, hits[j], intents[j] if intents else None,
                                    sentiments[j] if sentiments else None))
        return out, embs, live

    def _hits(self, texts: list[str], embs: np.ndarray, faq_probs: np.ndarray | None) -> list[list[Hit]]:
        """Return each question's ranked FAQs: the first stage's top-k, re-scored and re-ordered by the second
        stage (one cross-encoder pass over every question's top ``rerank_k``) when the bundle has one."""
        s = self.settings
        hits = [self.index.search(embs[j], text, s.top_k, s.fusion_weight,
                                  faq_probs[j] if faq_probs is not None else None, s.classifier_weight)
                for j, text in enumerate(texts)]
        if self.distance is not None and len(texts):
            from .distance import attach

            for h, d in zip(hits, self.distance.distances(embs)):
                attach(h, d)
        if self.reranker is None or not s.rerank_k:
            return hits
        top = self.reranker.rerank(texts, [h[:s.rerank_k] for h in hits], self.document, s.rerank_weight)
        return [t + h[s.rerank_k:] for t, h in zip(top, hits)]

    def document(self, query: str, hit: Hit) -> str:
        """Return the FAQ's side of a (question, FAQ) pair for the second stage (:func:`reranker.faq_document`)."""
        from .reranker import faq_document

        matched = self.index.texts[hit.text_index] if hit.text_index >= 0 else ""
        return faq_document(self._rows[hit.row][1], matched, query)

    def faq_probabilities(self, embs: np.ndarray) -> np.ndarray | None:
        """Return the FAQ classifier's P(KB row | question) for each embedding (n, n_rows), or None without one."""
        if self.faq_head is None or len(embs) == 0:
            return None
        return self.faq_head.predict_proba(embs)

    def _classify(self, head, labels, embs) -> list[tuple[str, float, np.ndarray]] | None:
        if head is None or len(embs) == 0:
            return None
        probs = head.predict_proba(embs)
        return [(labels[int(p.argmax())], float(p.max()), p) for p in probs]

    def _decide(self, text: str, truncated: bool, hits: list[Hit], intent, sentiment) -> Answer:
        s = self.settings
        sources = [self._source(h) for h in hits]
        conf = float(self.confidence.predict(self.confidence.features_of(hits))[0]) if hits else 0.0
        reason = code = None
        detail: dict[str, Any] = {}
        if not hits:
            reason, code = "the knowledge base is empty", "empty_kb"
        elif conf < s.threshold:
            reason = f"low confidence ({conf:.2f} < {s.threshold:.2f}): probably not covered by the knowledge base"
            code, detail = "low_confidence", {"confidence": conf, "threshold": float(s.threshold)}
        elif top_gap(hits) < s.ambiguity_margin:
            first, second = (rank_score(h) for h in hits[:2])
            reason = (f"ambiguous: '{sources[0].faq_id}' and '{sources[1].faq_id}' match almost equally "
                      f"({first:.3f} vs {second:.3f})")
            code = "ambiguous"
            detail = {"first": sources[0].faq_id, "second": sources[1].faq_id, "first_score": float(first),
                      "second_score": float(second), "margin": float(s.ambiguity_margin)}
        language = detect_language(text)
        reply = Answer(question=text, answer=s.handoff_message(language) if reason else sources[0].answer,
                       faq_id=None if reason else sources[0].faq_id, confidence=conf, handoff=reason is not None,
                       handoff_reason=reason, handoff_code=code, handoff_detail=detail, sources=sources,
                       truncated=truncated, model_version=self.version, language=language)
        if intent is not None:
            reply.intent, reply.intent_confidence = intent[0], intent[1]
            reply.team = s.teams.get(intent[0], intent[0])
        if sentiment is not None:
            escalate(reply, self.sentiment_labels, sentiment[2], self.settings.escalation_threshold)
        return reply

    def _source(self, hit: Hit) -> Source:
        faq_id, question, answer, url = self._rows[hit.row]
        return Source(faq_id=faq_id, question=question,
                      matched_text=self.index.texts[hit.text_index] if hit.text_index >= 0 else "",
                      score=round(hit.score, 4), dense=round(hit.dense, 4), lexical=round(hit.lexical, 4),
                      answer=answer, url=url, classifier=round(hit.clf, 4),
                      rerank=None if hit.rerank is None else round(hit.rerank, 4))

    def evaluate(self, data: Any = None, *, out: str | Path | None = None, sentiment: str | Path | None = None) -> Evaluation:
        """Return answered-correct and hand-off recall at the bundle's threshold, top-1, MRR, recall@k, coverage,
        intent accuracy on labelled questions ``data``, and escalation precision / recall / F1 on labelled
        ``sentiment`` messages; with ``out`` also write report.json, details.csv, the trade-off curve and plots."""
        from .evaluate import assistant_evaluation

        return assistant_evaluation(self, data, out=out, sentiment=sentiment)

    def explain(self, text: Any) -> SupportExplanation:
        """Return why the assistant answered as it did: each source's matched text and dense / lexical parts,
        the fusion weight, the confidence features and the thresholds."""
        reply = self.answer(text)
        clean, _, problem = clean_question(text, self.settings.max_query_chars)
        features = {}
        if problem is None:
            emb = self.encoder.encode([clean])
            hits = self._hits([clean], emb, self.faq_probabilities(emb))[0]
            features = dict(zip(self.confidence.features, map(float, self.confidence.features_of(hits))))
        w, b = self.settings.fusion_weight, self.settings.classifier_weight
        fusion = f"score = {w:.2f} * dense + {1 - w:.2f} * lexical"
        if self.faq_head is not None:
            fusion = f"score = {b:.2f} * classifier + {1 - b:.2f} * ({w:.2f} * dense + {1 - w:.2f} * lexical)"
        if self.reranker is not None and self.settings.rerank_k:
            v = self.settings.rerank_weight
            fusion += (f"; second stage: a cross-encoder re-scores the top {self.settings.rerank_k} (rerank = P(the "
                       f"FAQ answers)), ordered by {v:.1f} * rerank + {1 - v:.1f} * score")
        if self.distance is not None:
            fusion += ("; confidence also reads maha_top1, the question's Mahalanobis distance to the top FAQ's "
                       "paraphrases (per dimension; ~1 inside an FAQ's cloud, larger off it), and maha_gap")
        return SupportExplanation(model_version=self.version, reply=reply, fusion=fusion, confidence_features=features,
                                  threshold=self.settings.threshold, ambiguity_margin=self.settings.ambiguity_margin,
                                  index=self.index.kind, sources=reply.sources)

    # ------------------------------------------------------------------------------ the predictor contract
    @property
    def version(self) -> str:
        """The bundle's name and creation time, then the backend encoding the questions (``…/onnx-fp32``)."""
        label = getattr(self.encoder, "backend_label", None)
        return f"{self.bundle_version}/{label}" if label else self.bundle_version

    @property
    def model_version(self) -> str:
        """The bundle's name and creation time and the encoding backend (every answer's ``model_version``)."""
        return self.version

    @property
    def backend(self) -> str:
        """The backend encoding the questions: ``torch``, ``onnx-fp32`` or ``onnx-int8`` (``torch-int8`` for the
        older ``quantize="int8"`` PyTorch option)."""
        return getattr(self.encoder, "backend_label", "torch")

    def predict(self, items: Sequence[Any]) -> list[Answer]:
        """Return one :class:`Answer` per question (the contract's name for :meth:`answer_batch`)."""
        return self.answer_batch(items)

    def predict_frame(self, frame: pd.DataFrame, column: str = "question") -> pd.DataFrame:
        """The contract's name for :meth:`answer_frame`."""
        return self.answer_frame(frame, column)

    def monitor_window(self, data: Any) -> MonitorWindow:
        """Return what the assistant sees and says for ``data`` (a questions file — CSV / JSON / JSONL with a
        ``question`` or ``text`` column —, a table or a list of messages): per message that is a question its
        length in characters and words, its script (:func:`script_of`) and, with an intent head, the intent;
        ``scores`` ``{confidence, handoff}`` (handoff 0 / 1); ``embeddings`` the encoder's question vectors;
        ``unreadable`` the messages that are not questions (empty, binary, no words)."""
        from .monitoring import monitor_texts, question_window

        texts = monitor_texts(data)
        replies, embs, live = self._answer_and_embed(texts)
        return question_window(self, [replies[i] for i in live], embs, unreadable=len(texts) - len(live))

    # ------------------------------------------------------------------------------ batch scoring
    def answer_frame(self, frame: pd.DataFrame, column: str = "question") -> pd.DataFrame:
        """Return one output row per input row (for the core batch driver): answer, faq_id, confidence, …"""
        col = column if column in frame.columns else ("text" if "text" in frame.columns else None)
        if col is None:
            from lepton_apps.errors import DataError

            raise DataError(f"the input has no {column!r} (or 'text') column", where="questions table",
                            fix=f"name the question column {column!r}; found: {', '.join(map(str, frame.columns))}")
        replies = self.answer_batch(frame[col].tolist())
        return pd.DataFrame({
            "answer": [r.answer for r in replies],
            "faq_id": [r.faq_id for r in replies],
            "confidence": [r.confidence for r in replies],
            "handoff": [r.handoff for r in replies],
            "handoff_reason": [r.handoff_reason for r in replies],
            "handoff_code": [r.handoff_code for r in replies],
            "top_sources": [",".join(s.faq_id for s in r.sources) for r in replies],
            "intent": [r.intent for r in replies],
            "team": [r.team for r in replies],
            "sentiment": [r.sentiment for r in replies],
            "escalation_score": [r.escalation_score for r in replies],
            "escalate": [r.escalate for r in replies],
            "truncated": [r.truncated for r in replies],
            "model_version": [r.model_version for r in replies],
            "error": [r.error for r in replies],
        })


# Settings, HANDOFF_MESSAGE(S): config.py; clean_question and its problems: text.py (still importable from here)
__all__ = ["SupportAssistant", "Answer", "Source", "SupportExplanation", "SupportRequest", "Settings", "DOMAIN",
           "HANDOFF_MESSAGE", "HANDOFF_MESSAGES", "HANDOFF_CODES", "PROBLEM_CODES", "clean_question", "EMPTY_QUESTION",
           "BINARY_DATA", "UNREADABLE_TEXT", "NO_WORDS"]
