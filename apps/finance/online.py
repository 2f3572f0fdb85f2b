"""Features of one transaction at a time, for online scoring: :class:`OnlineState` keeps each customer's and
terminal's recent history in the process (saved in a bundle as a plain table; :class:`~lepton_apps.finance.state.RedisState`
keeps the same history in Redis), and :func:`transaction_vector` reads one transaction's features from either state,
bit-identical to what :func:`~lepton_apps.finance.features.feature_matrix` gives it in a batch (integer cents, the
same windows and label delay; :mod:`lepton_apps.finance.features` says how).
"""
from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np
import pandas as pd

from lepton_apps.errors import DataError

from .data import parse_label, parse_timestamp
from .features import DAY_S, NAT, FeatureSpec, Stream, entity_key, history_stream


class OnlineState:
    """Per-entity recent history for scoring one transaction at a time.

    ``window_values`` returns the window features batch scoring would give that transaction after
    the same stream; ``update`` appends it to the state (with its label if known), ``observe`` does
    both, and
    ``record_label`` sets a label that arrives later. ``to_frame`` / ``from_frame`` save and
    restore the state as a plain table (no pickle).
    """

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        self.customers: dict[str, tuple[list[int], list[int]]] = {}
        self.terminals: dict[str, tuple[list[int], list[int], list[str]]] = {}
        self.terminal_of: dict[str, str] = {}
        self.keep_s = int(max(spec.windows_days) * DAY_S) + spec.delay_s
        self.latest = NAT

    def window_values(self, t: int, cents: int | None, customer: str | None, terminal: str | None) -> dict[str, float]:
        """Return the time and window features of a transaction (without changing the state)."""
        spec, out = self.spec, {}
        dow, hour = (t // DAY_S + 3) % 7, (t % DAY_S) // 3600
        out["is_weekend"], out["is_night"] = float(dow >= 5), float(hour <= 6)
        if spec.has("customer"):
            times, amounts = self.customers.get(customer, ([], []))
            end = bisect.bisect_right(times, t)
            for w in spec.windows_days:
                left = bisect.bisect_right(times, t - w * DAY_S, 0, end)
                count = end - left + 1
                out[f"customer_nb_tx_{w}d"] = float(count)
                if cents is not None:
                    out[f"customer_avg_amount_{w}d"] = (sum(amounts[left:end]) + cents) / count / 100
        if spec.has("terminal") and spec.has("label"):
            times, labels, _ = self.terminals.get(terminal, ([], [], []))
            hi = bisect.bisect_right(times, t - spec.delay_s)
            for w in spec.windows_days:
                lo = bisect.bisect_right(times, t - spec.delay_s - w * DAY_S, 0, hi)
                count = hi - lo
                frauds = sum(1 for x in labels[lo:hi] if x == 1)
                out[f"terminal_nb_tx_{w}d"] = float(count)
                out[f"terminal_risk_{w}d"] = frauds / count if count else 0.0
        return out

    def update(self, t: int, cents: int | None, customer: str | None, terminal: str | None,
               label: int = -1, tx_id: str | None = None) -> None:
        """Append a transaction (label -1 = not known yet) to its customer's and terminal's history.

        Each touched entity forgets what is older than the longest window plus the label delay,
        so the cost of one update stays small and constant.
        """
        cutoff = t - self.keep_s
        if self.spec.has("customer"):
            times, amounts = self.customers.setdefault(customer, ([], []))
            i = bisect.bisect_right(times, t)
            times.insert(i, t)
            amounts.insert(i, 0 if cents is None else cents)
            if times[0] <= cutoff:
                cut = bisect.bisect_right(times, cutoff)
                del times[:cut], amounts[:cut]
        if self.spec.has("terminal") and self.spec.has("label"):
            times, labels, ids = self.terminals.setdefault(terminal, ([], [], []))
            i = bisect.bisect_right(times, t)
            times.insert(i, t)
            labels.insert(i, int(label))
            ids.insert(i, "" if tx_id is None else str(tx_id))
            if tx_id is not None:
                self.terminal_of[str(tx_id)] = terminal
            if times[0] <= cutoff:
                cut = bisect.bisect_right(times, cutoff)
                for old in ids[:cut]:
                    self.terminal_of.pop(old, None)
                del times[:cut], labels[:cut], ids[:cut]
        self.latest = max(self.latest, t)

    def observe(self, t: int, cents: int | None, customer: str | None, terminal: str | None,
                label: int = -1, tx_id: str | None = None) -> dict[str, float]:
        """Return the transaction's window features (:meth:`window_values`), then add it (:meth:`update`)."""
        values = self.window_values(t, cents, customer, terminal)
        self.update(t, cents, customer, terminal, label, tx_id)
        return values

    def record_label(self, tx_id: Any, label: int) -> bool:
        """Set the label of an earlier transaction; return False if it is no longer in the state."""
        terminal = self.terminal_of.get(str(tx_id))
        if terminal is None or terminal not in self.terminals:
            return False
        times, labels, ids = self.terminals[terminal]
        for i in range(len(ids) - 1, -1, -1):
            if ids[i] == str(tx_id):
                labels[i] = int(label)
                return True
        return False

    def prune(self) -> None:
        """Forget transactions older than the longest window plus the label delay."""
        cutoff = self.latest - self.keep_s
        for table in (self.customers, self.terminals):
            for key in list(table):
                lists = table[key]
                cut = bisect.bisect_right(lists[0], cutoff)
                if cut == len(lists[0]):
                    if table is self.terminals:
                        for i in lists[2]:
                            self.terminal_of.pop(i, None)
                    del table[key]
                elif cut:
                    if table is self.terminals:
                        for i in lists[2][:cut]:
                            self.terminal_of.pop(i, None)
                    for lst in lists:
                        del lst[:cut]

    def empty(self) -> bool:
        """Return True when no customer or terminal history is kept."""
        return not (self.customers or self.terminals)

    def to_frame(self, customers: set[str] | None = None, terminals: set[str] | None = None) -> pd.DataFrame:
        """Return the state as a table (kind, key, t, cents_or_label, tx_id) for saving; with ``customers`` /
        ``terminals`` only those entities' rows."""
        rows = {"kind": [], "key": [], "t": [], "value": [], "tx_id": []}
        for kind, table, wanted in (("customer", self.customers, customers), ("terminal", self.terminals, terminals)):
            pairs = table.items() if wanted is None else ((k, table[k]) for k in wanted if k in table)
            for key, lists in pairs:
                n = len(lists[0])
                rows["kind"] += [kind] * n
                rows["key"] += [key] * n
                rows["t"] += lists[0]
                rows["value"] += lists[1]
                rows["tx_id"] += lists[2] if kind == "terminal" else [""] * n
        return pd.DataFrame({"kind": pd.Series(rows["kind"], dtype="string"),
                             "key": pd.Series(rows["key"], dtype="string"),
                             "t": np.asarray(rows["t"], dtype=np.int64), "value": np.asarray(rows["value"], dtype=np.int64),
                             "tx_id": pd.Series(rows["tx_id"], dtype="string")})

    @classmethod
    def from_frame(cls, spec: FeatureSpec, frame: pd.DataFrame) -> OnlineState:
        """Rebuild a state saved by :meth:`to_frame`."""
        state = cls(spec)
        frame = frame.sort_values(["kind", "key", "t"], kind="stable")
        for (kind, key), g in frame.groupby(["kind", "key"], sort=False):
            t, v = g["t"].tolist(), g["value"].tolist()
            if kind == "customer":
                state.customers[str(key)] = (t, v)
            else:
                ids = g["tx_id"].fillna("").astype(str).tolist()
                state.terminals[str(key)] = (t, v, ids)
                state.terminal_of.update((i, str(key)) for i in ids if i)
        if len(frame):
            state.latest = int(frame["t"].max())
        return state

    def history(self, customers: set[str] | None = None, terminals: set[str] | None = None) -> Stream:
        """Return the state (or the named entities' part) as a :class:`Stream` of past transactions, for
        batch scoring after it."""
        return history_stream(self.to_frame(customers, terminals))


def transaction_vector(spec: FeatureSpec, state, cat_codes: dict[str, dict[str, int]], tx: dict[str, Any],
                       observe: bool = False) -> np.ndarray:
    """Return the feature vector of one transaction; with ``observe`` it also joins the state (in the
    same step as its window features are read: one atomic call when the state is in Redis)."""
    roles = spec.roles
    if not isinstance(tx, dict):
        raise DataError(f"a transaction must be a dict of column: value, got {type(tx).__name__}")
    t = cents = customer = terminal = None
    if spec.has_time:
        raw = tx.get(roles["timestamp"])
        t = parse_timestamp(raw, roles["timestamp"])
    if spec.has("amount"):
        a = tx.get(roles["amount"])
        try:
            a = float(a)
        except (TypeError, ValueError):
            raise DataError(f"amount is not a number: {a!r}", where=roles["amount"]) from None
        if not math.isfinite(a) or a < 0:
            raise DataError(f"amount must be a finite, non-negative number, got {a!r}", where=roles["amount"])
        cents = round(a * 100)
    for role in ("customer", "terminal"):
        if spec.has(role):
            val = tx.get(roles[role])
            if val is None or (isinstance(val, float) and math.isnan(val)) or val == "":
                raise DataError(f"missing {role} id", where=roles[role], fix=f"pass the {role} id of the transaction")
    if spec.has("customer"):
        customer = entity_key(tx[roles["customer"]])
    if spec.has("terminal"):
        terminal = entity_key(tx[roles["terminal"]])
    values: dict[str, float] = {}
    if spec.has_time and observe:
        label = parse_label(tx.get(roles["label"])) if roles.get("label") else -1
        tx_id = tx.get(roles["id"]) if roles.get("id") else None
        values = state.observe(t, cents, customer, terminal, label, tx_id)
    elif spec.has_time:
        values = state.window_values(t, cents, customer, terminal)
    if spec.has("amount"):
        values["amount"] = cents / 100
    for c in spec.numeric:
        try:
            values[f"col:{c}"] = float(tx.get(c)) if tx.get(c) is not None else math.nan
        except (TypeError, ValueError):
            values[f"col:{c}"] = math.nan
    for c in spec.categorical:
        raw = tx.get(c)
        code = None if raw is None else cat_codes[c].get(str(raw))
        values[f"col:{c}"] = math.nan if code is None else float(code)
    return np.array([values[n] for n in spec.names], dtype=float)


def transaction_ids(spec: FeatureSpec, tx: Any) -> dict[str, str | None]:
    """Return the transaction's ``transaction_id`` and ``customer_id`` (as text; None where the model has
    no such column or the transaction lacks it)."""
    out: dict[str, str | None] = {}
    for field, role in (("transaction_id", "id"), ("customer_id", "customer")):
        col = spec.roles.get(role)
        value = tx.get(col) if col and isinstance(tx, dict) else None
        out[field] = None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return out
