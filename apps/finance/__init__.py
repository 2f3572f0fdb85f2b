"""Transaction fraud detection template (``lepton-apps finance …``).

The domain's verbs (train, evaluate, score, check, demo-data) are added by the fraud
template issue; this package already plugs into the suite through :data:`DOMAIN`.
"""
import typer

from lepton_apps.domains import DomainSpec

cli = typer.Typer(help="Transaction fraud detection: CSV/Parquet transactions, leak-free features, LightGBM.",
                  no_args_is_help=True)

DOMAIN = DomainSpec(
    name="finance",
    title="Fraud detection",
    summary=("Score card or payment transactions (CSV / Parquet) with LightGBM on leak-free per-customer and "
             "per-terminal features: an alert queue, the threshold / alert-budget trade-off, and per-transaction "
             "reasons."),
    cli=cli,
    icon=":material/credit_card:",
    headline_metrics=("pr_auc", "roc_auc", "card_precision_at_k"),
)
