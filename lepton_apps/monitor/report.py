"""One domain's monitoring summary from the service database, the checks a cron job runs on it, and the
standalone HTML report (``lepton-apps monitor report / check``; the hub's Monitor page shows the same).

The summary holds: operations per day (requests, errors, latency p50 / p99 from the audit log), the served
score distribution per week, prediction drift of the latest window against the served bundle's reference
profile, input drift of the requests sampled by ``serve --monitor-sample`` (their monitoring windows: model
features, image statistics, embeddings — never raw inputs; batch files: ``monitor drift``), and live
performance per week from returned outcomes.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .live import attach, served_items, weekly

STATUS_COLOURS = {"ok": "#2e7d32", "warn": "#f9a825", "drift": "#c62828", "n/a": "#757575"}


@dataclasses.dataclass
class Thresholds:
    """What ``monitor check`` alerts on: drift at ``drift_status`` or worse, an error rate (5xx share of the
    window's requests) above ``max_error_rate``, a p99 latency above ``max_p99_ms``, and live metrics of the
    latest week with outcomes below their minimum (``{"roc_auc": 0.8}``)."""

    drift_status: str = "drift"
    max_error_rate: float = 0.01
    max_p99_ms: float | None = None
    minimum: dict[str, float] = dataclasses.field(default_factory=dict)


def operations(audit: pd.DataFrame) -> pd.DataFrame:
    """Return per day: requests, client errors (4xx), server errors (5xx), error rate (5xx share), latency
    p50 / p99 in ms of the answered (200) requests."""
    cols = ["day", "requests", "client_errors", "server_errors", "error_rate", "p50_ms", "p99_ms"]
    if not len(audit):
        return pd.DataFrame(columns=cols)
    a = audit.copy()
    a["day"] = pd.to_datetime(a["created_at"]).dt.normalize()
    rows = []
    for day, g in a.groupby("day", sort=True):
        ok = g.loc[g["status"] == 200, "latency_ms"]
        rows.append({"day": day.date().isoformat(), "requests": int(len(g)),
                     "client_errors": int(g["status"].between(400, 499).sum()),
                     "server_errors": int((g["status"] >= 500).sum()),
                     "error_rate": float((g["status"] >= 500).mean()),
                     "p50_ms": float(np.percentile(ok, 50)) if len(ok) else float("nan"),
                     "p99_ms": float(np.percentile(ok, 99)) if len(ok) else float("nan")})
    return pd.DataFrame(rows, columns=cols)


def served_scores(served: pd.DataFrame, names) -> dict[str, np.ndarray]:
    """Return ``{name: values}`` of the served items' result fields named like the profile's predictions."""
    out = {}
    for name in names:
        if name in served.columns:
            values = pd.to_numeric(served[name].map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v),
                                   errors="coerce")
            out[name] = values.to_numpy(dtype=float)
    return out


def summarize(store, domain: str, spec, *, bundle: Path | None, profile, since: dt.datetime | None = None,
              window_days: float = 7.0, now: dt.datetime | None = None) -> dict[str, Any]:
    """Return the monitoring summary of ``domain`` (see the module docstring) as plain data plus frames:
    ``operations``, ``scores`` (served items with week), ``drift`` (a DriftReport or None, with ``drift_note``),
    ``live`` and ``outcomes`` counts."""
    from .drift import compare

    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    audit = store.audit_frame(since=since, domain=domain)
    served = served_items(audit)
    outcomes = store.outcomes_frame(domain=domain)
    ratings = store.feedback_frame(since=since)
    joined, counts = attach(served, outcomes, spec.outcome_key,
                            ratings[["request_id", "rating"]] if len(ratings) else None)
    metrics = spec.live_metrics_function()
    live = weekly(joined, metrics, label_delay_days=spec.label_delay_days, now=now) if metrics else pd.DataFrame()
    drift, note = None, ""
    if profile is None:
        note = "no reference profile for the served bundle (retrain it, or 'lepton-apps monitor profile')"
    else:
        recent = served[pd.to_datetime(served["created_at"]) >= pd.Timestamp(now - dt.timedelta(days=window_days))] \
            if len(served) else served
        scores = served_scores(recent, profile.predictions)
        if not len(recent):
            note = f"no served predictions in the last {window_days:g} days"
        elif not scores:
            note = "the served results carry none of the profile's prediction columns"
        else:
            drift = compare(profile, current_scores=scores)
    input_drift, input_note = None, "no monitoring samples (serve --monitor-sample 0.1 stores what the model saw)"
    features, scores_s, embeddings, unreadable, sampled = store.monitor_window(
        domain, since=now - dt.timedelta(days=window_days))
    if sampled and profile is not None:
        input_drift = compare(profile, features, scores_s or None,
                              embeddings if profile.embeddings is not None else None, unreadable=unreadable)
        input_note = f"{sampled} sampled requests"
    elif sampled:
        input_note = "no reference profile to compare the samples with"
    return {"domain": domain, "bundle": str(bundle) if bundle else None, "since": since, "now": now,
            "window_days": window_days, "operations": operations(audit), "served": served, "drift": drift,
            "drift_note": note, "input_drift": input_drift, "input_note": input_note, "live": live, "outcomes": counts,
            "score_names": list(profile.predictions) if profile is not None else []}


def check(summary: dict[str, Any], thresholds: Thresholds) -> list[str]:
    """Return the reasons to alert (empty: all is well), one readable line each."""
    reasons = []
    ops = summary["operations"]
    recent = ops.tail(max(1, int(round(summary["window_days"])))) if len(ops) else ops
    if len(recent):
        requests = int(recent["requests"].sum())
        errors = int(recent["server_errors"].sum())
        rate = errors / requests if requests else 0.0
        if rate > thresholds.max_error_rate:
            reasons.append(f"error rate {rate:.1%} ({errors} of {requests} requests answered 5xx) > "
                           f"{thresholds.max_error_rate:.1%}")
        worst_p99 = float(recent["p99_ms"].max())
        if thresholds.max_p99_ms is not None and worst_p99 > thresholds.max_p99_ms:
            reasons.append(f"p99 latency {worst_p99:.0f} ms > {thresholds.max_p99_ms:g} ms")
    order = {"ok": 0, "warn": 1, "drift": 2}
    for kind, report in (("prediction drift", summary["drift"]), ("input drift", summary.get("input_drift"))):
        if report is not None and order.get(report.status, 0) >= order[thresholds.drift_status]:
            reasons += [f"{kind}: {r}" for r in report.reasons]
    live = summary["live"]
    labelled = live[live["labelled"] > 0] if len(live) else live
    if thresholds.minimum and len(labelled):
        latest = labelled.iloc[-1]
        for name, low in thresholds.minimum.items():
            value = latest.get(name)
            if value is None or (isinstance(value, float) and np.isnan(value)):
                reasons.append(f"{name}: not measured in the week of {latest['week']} (no outcomes for it)")
            elif value < low:
                reasons.append(f"{name} {value:.3f} < {low:g} in the week of {latest['week']} "
                               f"({int(latest['labelled'])} labelled predictions, model {latest['model_version']})")
    return reasons


def to_json(summary: dict[str, Any], reasons: list[str]) -> dict[str, Any]:
    """Return what a webhook receives: domain, status, reasons and the headline numbers."""
    drift = summary["drift"]
    return {"domain": summary["domain"], "status": "alert" if reasons else "ok", "reasons": reasons,
            "checked_at": summary["now"].isoformat(timespec="seconds") + "Z", "bundle": summary["bundle"],
            "drift_status": drift.status if drift is not None else None,
            "input_drift_status": summary["input_drift"].status if summary.get("input_drift") is not None else None,
            "outcomes": summary["outcomes"],
            "operations": json.loads(summary["operations"].tail(7).to_json(orient="records")),
            "live": json.loads(summary["live"].tail(4).to_json(orient="records")) if len(summary["live"]) else []}


# --------------------------------------------------------------------------- HTML

def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(frame: pd.DataFrame, status_column: str | None = None) -> str:
    if not len(frame):
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for _, r in frame.iterrows():
        cells = []
        for c in frame.columns:
            v = r[c]
            text = f"{v:.3f}" if isinstance(v, float) and not np.isnan(v) else ("–" if isinstance(v, float) else str(v))
            style = ""
            if c == status_column:
                style = f' style="background:{STATUS_COLOURS.get(str(v), "#fff")};color:#fff"'
            cells.append(f"<td{style}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def plots(summary: dict[str, Any]) -> dict[str, Any]:
    """Return the report's matplotlib figures: volume and errors, latency, served scores per week."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    ops = summary["operations"]
    if len(ops):
        fig, ax = plt.subplots(figsize=(7, 2.6))
        ax.bar(ops["day"], ops["requests"], color="#90caf9", label="requests")
        ax.bar(ops["day"], ops["server_errors"] + ops["client_errors"], color="#e57373", label="4xx + 5xx")
        ax.set_title("Requests per day")
        ax.legend(loc="upper left")
        ax.tick_params(axis="x", rotation=45)
        figs["volume"] = fig
        fig, ax = plt.subplots(figsize=(7, 2.6))
        ax.plot(ops["day"], ops["p50_ms"], marker="o", label="p50")
        ax.plot(ops["day"], ops["p99_ms"], marker="o", label="p99")
        ax.set_ylabel("ms")
        ax.set_title("Latency of answered requests")
        ax.legend(loc="upper left")
        ax.tick_params(axis="x", rotation=45)
        figs["latency"] = fig
    served = summary["served"]
    names = [n for n in summary["score_names"] if n in served.columns]
    if len(served) and names:
        created = pd.to_datetime(served["created_at"])
        week = (created - pd.to_timedelta(created.dt.weekday, unit="D")).dt.normalize().dt.date.astype(str)
        name = names[0]
        values = pd.Series(served_scores(served, [name])[name], index=served.index)
        groups = [(w, values[week == w].dropna().to_numpy()) for w in sorted(week.unique())]
        groups = [(w, v) for w, v in groups if len(v)]
        if groups:
            fig, ax = plt.subplots(figsize=(7, 2.6))
            ax.boxplot([v for _, v in groups], showfliers=False)
            ax.set_xticks(range(1, len(groups) + 1), [w for w, _ in groups])
            ax.set_title(f"Served '{name}' per week")
            ax.tick_params(axis="x", rotation=45)
            figs["scores"] = fig
    return figs


def drift_rows(report) -> pd.DataFrame:
    """Return a drift report's rows as a table (section, name, test, statistic, p-value, status, reason)."""
    return pd.DataFrame([{k: r.get(k) for k in ("section", "name", "test", "statistic", "p_value", "status", "reason")}
                         for r in report.rows()])


def render_html(summary: dict[str, Any], reasons: list[str]) -> str:
    """Return the standalone HTML report (plots embedded as PNG, no external files or scripts)."""
    figs = {name: _png(fig) for name, fig in plots(summary).items()}
    drift = summary["drift"]
    status = "alert" if reasons else "ok"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Lepton Apps monitor: {html.escape(summary['domain'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}h2{margin-top:1.5em}</style></head><body>",
        f"<h1>{html.escape(summary['domain'])}: <span style='color:"
        f"{STATUS_COLOURS['ok'] if status == 'ok' else STATUS_COLOURS['drift']}'>{status}</span></h1>",
        f"<p>Served bundle: {html.escape(str(summary['bundle']))}. Generated "
        f"{summary['now'].isoformat(timespec='seconds')} UTC"
        + (f", from {summary['since']}" if summary["since"] else "") + ".</p>",
        "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in reasons) + "</ul>" if reasons else "<p>No alerts.</p>",
        "<h2>Operations</h2>", figs.get("volume", ""), figs.get("latency", ""),
        _table(summary["operations"]),
        f"<h2>Prediction drift (last {summary['window_days']:g} days vs the reference profile)</h2>",
    ]
    if drift is not None:
        parts.append(_table(drift_rows(drift), status_column="status"))
    else:
        parts.append(f"<p>{html.escape(summary['drift_note'])}</p>")
    parts.append(f"<h2>Input drift of served requests (sampled, last {summary['window_days']:g} days)</h2>")
    if summary.get("input_drift") is not None:
        parts.append(_table(drift_rows(summary["input_drift"]), status_column="status"))
    parts.append(f"<p>{html.escape(summary.get('input_note', ''))}</p>")
    parts += [figs.get("scores", ""), "<h2>Live performance per week (returned outcomes)</h2>",
              f"<p>Outcomes: {summary['outcomes']['matched']} matched, {summary['outcomes']['unmatched']} unmatched."
              f" Weeks younger than the label delay have labels_complete = False.</p>",
              _table(summary["live"]), "</body></html>"]
    return "\n".join(parts)
