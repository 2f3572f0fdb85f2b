"""The finance template's configuration (pydantic, strict keys, loadable from YAML)."""
from __future__ import annotations

from typing import Literal, Optional

from lepton_apps.config import LeptonConfig


class Schema(LeptonConfig):
    """Which column plays which role. None = look for a common name; "" = the table has none."""

    id: Optional[str] = None
    timestamp: Optional[str] = None
    amount: Optional[str] = None
    customer: Optional[str] = None
    terminal: Optional[str] = None
    label: Optional[str] = None
    categorical: Optional[list[str]] = None
    exclude: list[str] = []
    missing_values: list[str] = ["?", "", "NA", "N/A", "null"]


class FraudConfig(LeptonConfig):
    """Everything ``lepton-apps finance train`` needs; loadable from YAML."""

    data: str
    out: Optional[str] = None
    columns: Schema = Schema()
    windows_days: list[int] = [1, 7, 30]
    label_delay_days: float = 7.0
    split: Literal["auto", "time", "prequential", "fraction", "stratified"] = "auto"
    train_days: Optional[float] = None
    val_days: Optional[float] = None
    delay_days: Optional[float] = None
    test_days: float = 7.0
    n_folds: int = 3
    imbalance: Literal["auto", "none", "sqrt", "balanced"] = "auto"
    search_trials: int = 0
    search_timeout_s: float = 120.0
    learning_rate: float = 0.1
    num_leaves: int = 31
    max_depth: int = 8
    max_rounds: int = 1000
    early_stopping_rounds: int = 50
    refit: bool = True  # after model selection, retrain the final booster on fit + validation rows
    threshold: Literal["cost", "alert_budget"] = "cost"
    alert_budget: int = 100
    cost_missed_fraud: float = 1.0
    cost_review: float = 2.0
    invalid_rows: Literal["error", "skip"] = "error"
    mlp: bool = False  # also train a PyTorch MLP; blended in only if it improves validation AUC-PR
    device: Literal["auto", "cpu", "gpu"] = "auto"
    threads: Optional[int] = None  # None: 1 thread below 200k rows (faster on shared CPUs), else all cores
    seed: int = 0
    overwrite: bool = False
