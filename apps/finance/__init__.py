"""Transaction fraud detection template (``lepton-apps finance …``, ``lepton_apps.finance``).

Python API (imported lazily, so importing this package stays light for the CLI and the hub)::

    from lepton_apps.finance import FraudScorer, train, FraudConfig

    bundle_dir = train(FraudConfig(data="transactions.parquet"))
    scorer = FraudScorer.load(bundle_dir)
    scorer.score(df)            # score, decision, reasons, error — one row per input row
    scorer.score_one(tx)        # online, with per-entity state
"""
from pathlib import Path

from lepton_apps.domains import DomainSpec, keep_functions, lazy_exports, lazy_function

from .cli import cli

_LAZY = {"FraudScorer": "predict", "FraudConfig": "train", "Schema": "data",
         "simulate_transactions": "demo", "build_demo": "demo"}
__all__ = ["DOMAIN", "train", *_LAZY]
__getattr__ = lazy_exports(__name__, _LAZY)


train = lazy_function(__name__, "train", "train", "Train a fraud model; return the bundle folder")
keep_functions(__name__, "train")  # importing the submodule train.py must not replace this function


DOMAIN = DomainSpec(
    name="finance",
    title="Fraud detection",
    summary=("Score card or payment transactions (CSV / Parquet) with LightGBM on leak-free per-customer and "
             "per-terminal features: an alert queue, the threshold / alert-budget trade-off, and per-transaction "
             "reasons."),
    cli=cli,
    page=Path(__file__).parent / "page.py",
    icon=":material/credit_card:",
    build_demo=lazy_function(__name__, "demo", "build_demo",
                             "Simulate demo transactions, train and register the demo bundle; return its name"),
    headline_metrics=("pr_auc", "roc_auc", "card_precision_at_k"),
)
