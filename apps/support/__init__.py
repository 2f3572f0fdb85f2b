"""Customer-service question answering template (``lepton-apps support …``).

    from lepton_apps.support import SupportAssistant, train, SupportConfig

    bundle = train(SupportConfig(kb="faq.csv", questions="heldout.csv", sentiment_data="tone.csv"))
    bot = SupportAssistant.load(bundle)
    bot.answer("my card was stolen")   # answer, faq_id, confidence, sources, handoff, intent, escalate

Importing this package stays light (no torch / transformers): the heavy modules load on first use.
"""
from __future__ import annotations

from pathlib import Path

from lepton_apps.domains import DomainSpec, EvaluateOption, EvaluateSpec, lazy_exports

from .cli import cli

_LAZY = {"SupportAssistant": "predict", "Answer": "predict", "Source": "predict", "train": "training",
         "SupportConfig": "config", "read_kb": "data", "evaluate_assistant": "evaluate", "SentenceEncoder": "encoder",
         "build_demo": "demo"}
__all__ = ["DOMAIN", *_LAZY]
__getattr__ = lazy_exports(__name__, _LAZY)


DOMAIN = DomainSpec(
    name="support",
    title="Support assistant",
    summary=("Answer customer questions from an FAQ knowledge base with a Transformer sentence encoder: the "
             "answer with its sources and a calibrated confidence, the intent, and a hand-off to a human agent "
             "when the assistant is unsure or the customer is upset."),
    cli=cli,
    page=Path(__file__).with_name("page.py"),
    icon=":material/support_agent:",
    build_demo="lepton_apps.support.demo:build_demo",
    predictor="lepton_apps.support.predict:SupportAssistant",
    backend_export="lepton_apps.support.export:backend_export",
    headline_metrics=("top1_accuracy", "mrr", "handoff_recall"),
    live_metrics="lepton_apps.support.evaluate:live_metrics",
    primary_metric="answered_accuracy",
    evaluate=EvaluateSpec(data_help="Questions (JSON / CSV) with question, faq_id (empty = out of scope), optional "
                                    "intent.",
                          data_required=False,
                          options=(EvaluateOption("sentiment", Path, None, "Labelled messages (text,label; 'neutral' = "
                                                  "calm) for escalation precision / recall / F1; only split=test rows "
                                                  "when marked."),)),
)
