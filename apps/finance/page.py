"""Fraud detection page: the alert queue, the threshold / alert-budget trade-off, reasons, and training.

Mounted by the hub, or alone: ``streamlit run apps/finance/page.py``.
"""
from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from lepton_apps.errors import DataError
from lepton_apps.registry import Registry
from lepton_apps.ui.common import cached_predictor, guarded

QUEUE_ROWS = 200
DEMO = dict(n_customers=400, n_terminals=800, n_days=30, seed=1)


def load_scorer(path: str):
    """Return the FraudScorer of a bundle folder from the hub's shared model cache (reloaded when its
    bundle.json changes)."""
    return cached_predictor(path, "finance")


@st.cache_data(show_spinner="Simulating demo transactions…", max_entries=2)
def demo_table() -> pd.DataFrame:
    """Return a small simulated transaction table (labels kept, for checking the queue)."""
    from lepton_apps.finance.demo import simulate_transactions

    return simulate_transactions(**DEMO).drop(columns=["scenario"])


def read_upload(upload) -> pd.DataFrame:
    """Return the uploaded CSV / Parquet file as a DataFrame (DataError when unreadable)."""
    from lepton_apps.finance.data import read_table

    suffix = Path(upload.name).suffix.lower()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(upload.getvalue())
        return read_table(path)


def read_path(text: str) -> pd.DataFrame:
    """Return the table at a server-side path."""
    from lepton_apps.finance.data import read_table

    return read_table(Path(text.strip()).expanduser())


def choose_data(key: str) -> pd.DataFrame | None:
    """Show the data source picker (demo, upload, path); return the table or None."""
    source = st.radio("Transactions", ["Demo data", "Upload a file", "Path on the server"], horizontal=True,
                      key=f"{key}_source")
    if source == "Demo data":
        return demo_table()
    if source == "Upload a file":
        upload = st.file_uploader("CSV or Parquet", type=["csv", "parquet"], key=f"{key}_upload")
        return read_upload(upload) if upload is not None else None
    text = st.text_input("Path to a CSV or Parquet file", key=f"{key}_path")
    return read_path(text) if text.strip() else None


def model_columns(path: str) -> dict[str, str] | None:
    """Return ``{column: what it is}`` that the registered model at ``path`` needs to score a table,
    read from its bundle.json only — the bundle is not loaded or verified here (None when bundle.json is
    unreadable or does not say)."""
    import json

    from lepton_apps.finance.features import FeatureSpec
    from lepton_apps.finance.features import required_columns

    try:
        meta = json.loads((Path(path) / "bundle.json").read_text(encoding="utf-8"))
        return required_columns(FeatureSpec.from_json(meta["preprocessing"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fitting_models(paths: list[str], df: pd.DataFrame) -> list[str]:
    """Return the model paths (in the given order) whose needed columns are all in ``df``."""
    have = set(map(str, df.columns))
    out = []
    for path in paths:
        needed = model_columns(path)
        if needed is not None and all(str(c) in have for c in needed):
            out.append(path)
    return out


def pick_model(df: pd.DataFrame | None = None) -> str | None:
    """Show the model picker; return the bundle path or None when the registry has no fraud model.

    With a table ``df``, the picker starts on the newest model that can score it (the newest model
    may need columns these data lack, e.g. one trained with extra user columns).
    """
    entries = Registry().list("finance")
    if not entries:
        st.info("No fraud model in the registry yet. Run `lepton-apps demo --domain finance`, or train one in the "
                "**Train** tab.", icon=":material/inventory_2:")
        return None
    labels = {f"{e.name}" + (f" ({', '.join(e.aliases)})" if e.aliases else ""): str(e.path) for e in entries}
    paths = list(labels.values())
    fits = fitting_models(paths, df) if df is not None else []
    index = paths.index(fits[0]) if fits else 0
    return labels[st.selectbox("Model", list(labels), index=index, key="model",
                               help="Starts on the newest model that can score the chosen transactions.")]


def say_missing_columns(path: str, df: pd.DataFrame, missing: dict[str, str]) -> None:
    """Say plainly that the chosen model cannot score ``df``: which columns it lacks, and which
    registered models can score it instead."""
    from lepton_apps.finance.features import missing_columns_message

    others = [Path(p).name for p in fitting_models([str(e.path) for e in Registry().list("finance")], df)]
    instead = (f"Models that can score these data: {', '.join(others)} — pick one under **Model** above."
               if others else "No registered fraud model can score these data: train one on them in the "
                              "**Train** tab, or add the columns.")
    st.error(f"The model {Path(path).name} cannot score these transactions: "
             f"{missing_columns_message(missing)} (the data has: {', '.join(map(str, df.columns[:30]))}). {instead}",
             icon=":material/error:")


@st.cache_data(show_spinner="Scoring…", max_entries=4)
def scored_table(path: str, mtime_ns: int, df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Return (scores with errors, feature matrix) of ``df`` under the model at ``path``."""
    scorer = load_scorer(path)
    x, errors = scorer.features(df)
    scores = scorer.score_features(x, errors.to_numpy(), index=df.index, reasons_for="none")
    return scores, x


def operating_controls(scorer, val: pd.DataFrame) -> float:
    """Show the threshold / alert-budget control and live validation metrics; return the threshold."""
    from lepton_apps.finance.evaluate import operating_point

    info = scorer.threshold_info
    n_days = max(float(val["day"].nunique()), 1.0)
    mode = st.radio("Operate by", ["Threshold", "Daily alert budget"], horizontal=True, key="mode")
    if mode == "Threshold":
        threshold = st.slider("Threshold", 0.0, 1.0, float(round(scorer.threshold, 3)), 0.001, format="%.3f",
                              key="threshold")
    else:
        budget = st.slider("Alerts per day", 1, 1000, int(info.get("k", 100)), key="budget")
        k = int(min(len(val), max(1, round(budget * n_days))))
        threshold = float(np.sort(val["score"].to_numpy())[::-1][k - 1]) if len(val) else scorer.threshold
    amount = val["amount"].to_numpy() if val["amount"].notna().any() else None
    p = operating_point(val["label"].to_numpy(), val["score"].to_numpy(), threshold, amount, n_days,
                        info.get("cost_missed", 1.0), info.get("cost_review", 1.0))
    cols = st.columns(4)
    cols[0].metric("Precision (validation)", f"{p['precision']:.3f}" if p["alerts"] else "–")
    cols[1].metric("Recall (validation)", f"{p['recall']:.3f}")
    cols[2].metric("Alerts per day", f"{p['alerts_per_day']:.1f}")
    cols[3].metric("Expected cost per day", f"{p['cost'] / n_days:,.0f}")
    st.caption(f"Threshold {threshold:.4f} (the bundle's choice: {scorer.threshold:.4f}, by {info.get('method')}). "
               "Numbers are measured on the validation period saved in the bundle.")
    return threshold


def pr_figure(val: pd.DataFrame, threshold: float):
    """Return the validation PR curve with the current operating point marked."""
    from lepton_apps.plots import plot_pr

    return plot_pr(val["label"].to_numpy(), val["score"].to_numpy(), threshold, title="Precision-recall (validation)")


def render_queue() -> None:
    """The alert queue tab: model and operating point on top, then the data and its alert queue.

    The data are chosen first (shown below the model), so the model picker can start on a model
    that fits them.
    """
    from lepton_apps.errors import LeptonError
    from lepton_apps.ui.common import show_error

    model_slot, controls_slot, data_slot = st.container(), st.container(), st.container()
    with data_slot:
        try:
            df = choose_data("queue")
        except LeptonError as exc:  # an unreadable file: say so here, still show the model
            show_error(exc, "Transactions")
            df = None
    with model_slot:
        path = pick_model(df)
    if path is None:
        return
    mtime = (Path(path) / "bundle.json").stat().st_mtime_ns
    scorer = load_scorer(path)
    evals = scorer.bundle.load_parquet("eval_scores.parquet")
    val = evals[evals["split"] == "val"]
    with controls_slot:
        left, right = st.columns([3, 2])
        with left:
            threshold = operating_controls(scorer, val)
        with right:
            st.pyplot(pr_figure(val, threshold), clear_figure=False)
    if df is None:
        st.caption("Choose demo data, upload a file or give a path to see the alert queue.")
        return
    missing = scorer.missing_columns(df.columns)
    if missing:
        say_missing_columns(path, df, missing)
        return
    scores, x = scored_table(path, mtime, df)
    errors = scores["error"].notna()
    if errors.any():
        st.warning(f"{int(errors.sum())} of {len(df)} rows could not be scored; their problems are listed below.",
                   icon=":material/warning:")
        st.dataframe(pd.DataFrame({"row": np.flatnonzero(errors), "problem": scores.loc[errors, "error"].to_numpy()}),
                     hide_index=True, height=150)
    queue = df.assign(score=scores["score"].to_numpy()).loc[~errors.to_numpy()]
    queue = queue.assign(alert=queue["score"] >= threshold).sort_values("score", ascending=False, kind="stable")
    n_alerts = int(queue["alert"].sum())
    st.subheader(f"Alert queue: {n_alerts} alerts of {len(queue)} transactions")
    shown = queue.head(QUEUE_ROWS)
    event = st.dataframe(shown, hide_index=True, on_select="rerun", selection_mode="single-row", key="queue",
                         column_config={"score": st.column_config.ProgressColumn("score", min_value=0, max_value=1,
                                                                                 format="%.3f")})
    picked = event.selection.rows[0] if event and event.selection.rows else 0
    options = list(range(len(shown)))
    if not options:
        return
    label = lambda i: f"#{i + 1}: score {shown['score'].iloc[i]:.3f}"  # noqa: E731
    choice = st.selectbox("Transaction to explain (or click a row)", options, index=picked, format_func=label,
                          key=f"explain_{picked}")
    render_reasons(scorer, x[df.index.get_indexer([shown.index[choice]])[0]])


def render_reasons(scorer, vec: np.ndarray) -> None:
    """Show a transaction's TreeSHAP contributions as a bar chart and a table."""
    contrib = scorer.booster.predict(vec[None, :], pred_contrib=True)[0]
    frame = pd.DataFrame({"feature": [scorer.spec.readable(n) for n in scorer.spec.names], "value": vec,
                          "contribution": contrib[:-1]})
    frame = frame.reindex(frame["contribution"].abs().sort_values(ascending=False).index).head(10)
    st.markdown("**Why this score** (TreeSHAP contributions, log-odds; red pushes towards fraud, blue away)")
    feature_bars(frame, "feature", "contribution", "contribution to the log-odds of fraud")
    st.dataframe(frame, hide_index=True)


def feature_bars(frame: pd.DataFrame, label: str, value: str, title: str, signed: bool = True) -> None:
    """Horizontal bars in the frame's order, with the readable feature names in full (Streamlit's
    bar chart cuts them to a few words, which makes the terminal windows indistinguishable);
    ``signed``: positive bars red (towards fraud), negative blue."""
    import altair as alt

    color = (alt.condition(alt.datum[value] > 0, alt.value("#c0392b"), alt.value("#2e86c1")) if signed
             else alt.value("#2e86c1"))
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X(f"{value}:Q", title=title),
        y=alt.Y(f"{label}:N", sort=None, title=None, axis=alt.Axis(labelLimit=420)),
        color=color, tooltip=[label, value])
    st.altair_chart(chart.properties(height=28 * len(frame) + 40), use_container_width=True)


def render_report() -> None:
    """The model report tab: test metrics, features built, global importance and the bundle's plots."""
    entries = Registry().list("finance")
    if not entries:
        st.caption("No fraud model yet.")
        return
    path = str(entries[0].path) if "model" not in st.session_state else None
    for e in entries:
        label = f"{e.name}" + (f" ({', '.join(e.aliases)})" if e.aliases else "")
        if st.session_state.get("model") == label:
            path = str(e.path)
    scorer = load_scorer(path)
    report = scorer.bundle.load_json("report.json")
    test = report["test"]
    cols = st.columns(4)
    cols[0].metric("Test AUC-PR", f"{test['pr_auc']:.3f}")
    cols[1].metric("Test ROC-AUC", f"{test['roc_auc']:.3f}")
    cols[2].metric(f"Card Precision@{test['k']}", f"{test['card_precision_at_k']:.3f}")
    cols[3].metric("Alerts per day (test)", f"{test['alerts_per_day']:.1f}")
    st.caption(f"Split: {report['split']['description']}. Device: {report['device']}. "
               f"Imbalance handling: {report['model_choice']['imbalance']}.")
    st.markdown("**Features built:** " + "; ".join(report["features_built"]))
    if report["features_not_built"]:
        st.markdown("**Not built:** " + "; ".join(report["features_not_built"]))
    importance = scorer.importance()
    st.markdown("**Global importance** (mean |TreeSHAP| on test transactions)")
    feature_bars(importance.head(15), "readable", "mean_abs_shap", "mean |TreeSHAP contribution|", signed=False)
    plots = st.columns(3)
    for col, name in zip(plots, ("pr_curve.png", "threshold.png", "scores.png")):
        col.image(str(scorer.bundle.file(f"plots/{name}")))


def render_train() -> None:
    """The train tab: data check, schema mapping form, progress bar."""
    from lepton_apps.finance.data import ROLES, Schema, summary, validate

    df = choose_data("train")
    if df is None:
        st.caption("Choose demo data, upload a file or give a path to check and train.")
        return
    v = validate(df, Schema(), need_label=False)
    info = summary(df, v)
    cols = st.columns(4)
    cols[0].metric("Rows", f"{info['rows']:,}")
    cols[1].metric("Fraud rate", f"{info['fraud_rate']:.2%}" if "fraud_rate" in info else "no label")
    cols[2].metric("Days", f"{info['time_span']['days']:g}" if "time_span" in info else "no time")
    cols[3].metric("Rows with problems", f"{info['invalid_rows']:,}")
    if info["problems"]:
        st.warning("Problems: " + ", ".join(f"{k}: {n}" for k, n in info["problems"].items()), icon=":material/warning:")
    for text in info["table_problems"]:
        st.warning(f"Problem: {text}", icon=":material/warning:")
    for note in info["notes"]:
        st.caption(note)
    columns = ["(none)"] + [str(c) for c in df.columns]
    with st.form("schema"):
        st.markdown("**Schema mapping**")
        picks = {}
        grid = st.columns(3)
        for i, role in enumerate(ROLES):
            found = v.roles.get(role)
            picks[role] = grid[i % 3].selectbox(role, columns, index=columns.index(found) if found else 0,
                                                key=f"role_{role}")
        budget = st.number_input("Daily alert budget (k)", 1, 100_000, 100)
        review = st.number_input("Cost of reviewing one alert", 0.0, 1e6, 2.0)
        skip = st.checkbox("Leave rows with problems out of training (they are counted)", value=False)
        submitted = st.form_submit_button("Train", type="primary")
    if not submitted:
        return
    roles = {r: ("" if c == "(none)" else c) for r, c in picks.items()}
    if not roles["label"]:
        raise DataError("pick the label column (1 = fraud) before training", where="schema mapping")
    from lepton_apps.finance.config import FraudConfig
    from lepton_apps.finance.training import train

    bar = st.progress(0.0, text="starting")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = FraudConfig(data="(uploaded table)", out=str(Path(tmp) / "bundle"), columns=Schema(**roles),
                          alert_budget=int(budget), cost_review=float(review),
                          invalid_rows="skip" if skip else "error")
        bundle = train(cfg, frame=df, progress=lambda msg, frac: bar.progress(min(max(frac, 0.0), 1.0), text=msg))
        entry = Registry().register(bundle, f"finance-{stamp}")
    m = entry.metrics
    st.success(f"Trained and registered **{entry.name}**: test AUC-PR {m['pr_auc']:.3f}, ROC-AUC {m['roc_auc']:.3f}, "
               f"CP@k {m['card_precision_at_k']:.3f}. Pick it in the Alert queue tab.", icon=":material/check_circle:")


def render() -> None:
    """Render the page."""
    st.title("Fraud detection")
    st.caption("Score transactions with a LightGBM model on leak-free customer and terminal features; work the "
               "alert queue; see why each transaction was flagged.")
    queue_tab, report_tab, train_tab = st.tabs(["Alert queue", "Model report", "Train"])
    with queue_tab, guarded("Alert queue"):
        render_queue()
    with report_tab, guarded("Model report"):
        render_report()
    with train_tab, guarded("Training"):
        render_train()


render()  # no st.set_page_config: the hub owns the page config; run alone, Streamlit's defaults apply
