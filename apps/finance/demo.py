"""Embedded demo data: a seeded card-transaction simulator.

Follows the published design of the simulator in Le Borgne et al., *Reproducible Machine
Learning for Credit Card Fraud Detection – Practical Handbook* (chapter 3), re-written here
as vectorised numpy:

* customers and terminals sit at random points of a 100 × 100 grid; a customer pays only at
  terminals within ``radius`` of home; each customer has a mean amount (U[5, 100], std = mean/2)
  and a mean number of transactions per day (U[0, 4]);
* each day a customer makes Poisson(mean) transactions at normally distributed times of day
  (mean noon, std 20,000 s; times outside the day are discarded);
* fraud scenario 1: every amount above 220 is fraud;
* scenario 2: each day ``n_compromised_terminals`` random terminals are compromised and every
  transaction on them in the next 28 days is fraud;
* scenario 3: each day ``n_compromised_customers`` random customers' credentials leak; over
  the next 14 days a third of their transactions have their amount multiplied by 5 and are fraud.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lepton_apps.errors import ConfigError

DAY_S = 86_400
START = "2018-04-01"
DEMO_SIZE = {"n_customers": 1000, "n_terminals": 2000, "n_days": 60}  # what `lepton-apps demo` builds
SCENARIOS = {0: "legitimate", 1: "amount above 220", 2: "compromised terminal", 3: "compromised customer"}


def simulate_transactions(n_customers: int = 5000, n_terminals: int = 10000, n_days: int = 183, *,
                          radius: float = 5.0, start: str = START, seed: int = 0,
                          n_compromised_terminals: int = 2, n_compromised_customers: int = 3,
                          terminal_days: int = 28, customer_days: int = 14) -> pd.DataFrame:
    """Return a simulated transaction table sorted by time.

    Columns: transaction_id, timestamp (datetime64), customer_id, terminal_id, amount, label
    (0/1) and scenario (0 = legitimate, 1/2/3 = the fraud scenario that made it fraud).
    """
    for name, value in (("n_customers", n_customers), ("n_terminals", n_terminals), ("n_days", n_days)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}", where=name)
    rng = np.random.default_rng(seed)
    cust_xy = rng.uniform(0, 100, size=(n_customers, 2))
    mean_amount = rng.uniform(5, 100, size=n_customers)
    std_amount = mean_amount / 2
    mean_tx_per_day = rng.uniform(0, 4, size=n_customers)
    term_xy = rng.uniform(0, 100, size=(n_terminals, 2))
    offsets, flat = _terminals_within(cust_xy, term_xy, radius)
    n_avail = np.diff(offsets)

    counts = rng.poisson(np.repeat(mean_tx_per_day[:, None], n_days, axis=1))  # (customers, days)
    cust = np.repeat(np.arange(n_customers), counts.sum(axis=1))
    day = np.concatenate([np.repeat(np.arange(n_days), row) for row in counts]) if len(cust) else np.zeros(0, int)
    seconds = np.rint(rng.normal(DAY_S / 2, 20_000, size=len(cust))).astype(np.int64)
    amount = rng.normal(mean_amount[cust], std_amount[cust])
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean_amount[cust[negative]])
    amount = np.round(amount, 2)
    pick = rng.random(len(cust))
    keep = (seconds > 0) & (seconds < DAY_S) & (n_avail[cust] > 0)
    cust, day, seconds, amount, pick = cust[keep], day[keep], seconds[keep], amount[keep], pick[keep]
    term = flat[offsets[cust] + (pick * n_avail[cust]).astype(np.int64)]

    label = np.zeros(len(cust), np.int8)
    scenario = np.zeros(len(cust), np.int8)
    big = amount > 220
    label[big], scenario[big] = 1, 1
    hit_terminal = _compromised(rng, n_terminals, n_days, n_compromised_terminals, terminal_days)[term, day]
    label[hit_terminal], scenario[hit_terminal] = 1, 2
    leaked = _compromised(rng, n_customers, n_days, n_compromised_customers, customer_days)[cust, day]
    inflated = leaked & (rng.random(len(cust)) < 1 / 3)
    amount[inflated] = np.round(amount[inflated] * 5, 2)
    label[inflated], scenario[inflated] = 1, 3

    t = day.astype(np.int64) * DAY_S + seconds
    order = np.lexsort((cust, t))
    base = pd.Timestamp(start).value // 1_000_000_000
    return pd.DataFrame({
        "transaction_id": np.arange(len(order), dtype=np.int64),
        "timestamp": pd.to_datetime(base + t[order], unit="s"),
        "customer_id": cust[order].astype(np.int64),
        "terminal_id": term[order].astype(np.int64),
        "amount": amount[order],
        "label": label[order].astype(np.int64),
        "scenario": scenario[order].astype(np.int64),
    })


def _terminals_within(cust_xy: np.ndarray, term_xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Return CSR arrays (offsets, terminal ids) of the terminals within ``radius`` of each customer."""
    from scipy.spatial import cKDTree

    lists = cKDTree(term_xy).query_ball_point(cust_xy, r=radius)
    sizes = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    offsets = np.r_[0, np.cumsum(sizes)]
    flat = np.fromiter((i for x in lists for i in sorted(x)), dtype=np.int64, count=int(offsets[-1]))
    return offsets, flat


def _compromised(rng: np.random.Generator, n_entities: int, n_days: int, per_day: int, duration: int) -> np.ndarray:
    """Return a (entities, days) bool matrix: True where the entity is compromised on that day."""
    hit = np.zeros((n_entities, n_days), dtype=bool)
    per_day = min(per_day, n_entities)
    for d in range(n_days):
        chosen = rng.choice(n_entities, size=per_day, replace=False)
        hit[chosen, d:d + duration] = True
    return hit


def write_demo_data(out: str | Path, n_customers: int = 1000, n_terminals: int = 2000, n_days: int = 60,
                    seed: int = 0) -> Path:
    """Simulate transactions and write them to ``out`` (.csv or .parquet); return the path."""
    from lepton_apps.io import atomic_path

    out = Path(out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise ConfigError(f"demo data output must end in .csv or .parquet, not {out.name!r}", where=str(out),
                          fix="e.g. lepton-apps finance demo-data transactions.parquet")
    df = simulate_transactions(n_customers, n_terminals, n_days, seed=seed)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return out


def build_demo(workdir: str | Path, registry) -> str:
    """Simulate demo transactions, train the demo bundle (about a minute on 2 cores), register it;
    return the registered name (``finance-demo-<timestamp>``)."""
    import shutil

    from .config import FraudConfig
    from .training import train

    workdir = Path(workdir)
    data = write_demo_data(workdir / "transactions.parquet", **DEMO_SIZE, seed=0)
    bundle = workdir / "bundle"
    if bundle.exists():
        shutil.rmtree(bundle)
    train(FraudConfig(data=str(data), out=str(bundle), seed=0, overwrite=True))
    return registry.register(bundle, registry.free_name("finance-demo")).name
