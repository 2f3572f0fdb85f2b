"""Customer-service question answering template (``lepton-apps support …``).

The domain's verbs (train, evaluate, answer, check, demo-data) are added by the support
template issue; this package already plugs into the suite through :data:`DOMAIN`.
"""
import typer

from lepton_apps.domains import DomainSpec

cli = typer.Typer(help="Customer-service QA: FAQ retrieval with a Transformer encoder, confidence and hand-off.",
                  no_args_is_help=True)

DOMAIN = DomainSpec(
    name="support",
    title="Support assistant",
    summary=("Answer customer questions from an FAQ knowledge base with a Transformer sentence encoder: the "
             "answer with its sources and a calibrated confidence, the intent, and a hand-off to a human agent "
             "when the assistant is unsure or the customer is upset."),
    cli=cli,
    icon=":material/support_agent:",
    headline_metrics=("top1_accuracy", "mrr", "handoff_recall"),
)
