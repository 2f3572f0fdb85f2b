"""Transaction fraud detection template (``lepton-apps finance …``, ``lepton_apps.finance``).

Python API (imported lazily, so importing this package stays light for the CLI and the hub)::

    from lepton_apps.finance import FraudScorer, train, FraudConfig

    bundle_dir = train(FraudConfig(data="transactions.parquet"))
    scorer = FraudScorer.load(bundle_dir)
    scorer.score(df)            # score, decision, reasons, error — one row per input row
    scorer.score_one(tx)        # online, with per-entity state
"""
from pathlib import Path

from lepton_apps.domains import DomainSpec, EvaluateOption, EvaluateSpec, lazy_exports

from .cli import cli

_LAZY = {"FraudScorer": "predict", "FraudConfig": "config", "Schema": "data", "train": "training",
         "simulate_transactions": "demo", "build_demo": "demo"}
__all__ = ["DOMAIN", *_LAZY]
__getattr__ = lazy_exports(__name__, _LAZY)


DOMAIN = DomainSpec(
    name="finance",
    title="Fraud detection",
    summary=("Score card or payment transactions (CSV / Parquet) with LightGBM on leak-free per-customer and "
             "per-terminal features: an alert queue, the threshold / alert-budget trade-off, and per-transaction "
             "reasons."),
    cli=cli,
    page=Path(__file__).parent / "page.py",
    icon=":material/credit_card:",
    build_demo="lepton_apps.finance.demo:build_demo",
    predictor="lepton_apps.finance.predict:FraudScorer",
    headline_metrics=("pr_auc", "roc_auc", "card_precision_at_k"),
    live_metrics="lepton_apps.finance.evaluate:live_metrics",
    primary_metric="pr_auc",
    outcome_key="transaction_id",
    label_delay_days=7.0,  # the template's default (FraudConfig.label_delay_days)
    evaluate=EvaluateSpec(data_help="Labelled transactions (CSV / Parquet); default: the bundle's stored test report.",
                          data_required=False,
                          options=(EvaluateOption("k", int, 100, "Daily alert budget for Card Precision@k."),)),
)
