"""The hub's Monitor page: per domain and model version, what ``lepton-apps monitor report / check`` show —
alerts, requests / errors / latency per day, prediction drift against the served bundle's reference
profile with traffic lights, and live performance per week from returned outcomes."""
from __future__ import annotations

import streamlit as st

from lepton_apps import domains
from lepton_apps.ui.common import guarded

NO_SERVICE = """
**No service database on this machine yet.** Monitoring reads the audit log of `lepton-apps serve` and the
outcomes returned for its predictions (`POST /v1/<domain>/feedback` or `lepton-apps monitor labels FILE`).
Drift of a batch file works without it: `lepton-apps monitor drift MODEL FILE`.
"""


def status_style(value: str) -> str:
    """Return the CSS of a status cell (traffic light)."""
    from lepton_apps.monitor.report import STATUS_COLOURS

    colour = STATUS_COLOURS.get(str(value))
    return f"background-color: {colour}; color: white" if colour else ""


def render() -> None:
    """Render the page."""
    st.title("Monitor")
    from lepton_apps.store import configured_url

    url = configured_url()
    if url is None:
        st.info(NO_SERVICE, icon=":material/monitoring:")
        return
    specs = {n: s for n, s in domains.available_domains().items() if s.live_metrics}
    if not specs:
        st.warning("No installed template declares live metrics.")
        return
    from lepton_apps.monitor.cli import served_bundle
    from lepton_apps.monitor.report import Thresholds, check, summarize
    from lepton_apps.store import Store

    left, mid, right = st.columns(3)
    domain = left.selectbox("Domain", list(specs), key="monitor_domain")
    window = mid.number_input("Window (days)", min_value=1.0, max_value=90.0, value=7.0, step=1.0,
                              key="monitor_window")
    store = Store.open(url)
    bundle, profile = served_bundle(domain, None, None)
    summary = summarize(store, domain, specs[domain], bundle=bundle, profile=profile, window_days=window)
    versions = sorted(set(summary["live"]["model_version"])) if len(summary["live"]) else []
    version = right.selectbox("Model version", ["all", *versions], key="monitor_version")
    reasons = check(summary, Thresholds())
    st.caption(f"Served bundle: `{bundle}` (the domain's production alias, else latest). Database: "
               f"`{store.engine.url.render_as_string(hide_password=True)}`.")
    if reasons:
        st.error("**Alerts**\n\n" + "\n".join(f"- {r}" for r in reasons), icon=":material/notification_important:")
    else:
        st.success("No alerts at the default thresholds (5xx ≤ 1 %, no prediction drift).", icon=":material/check:")

    st.subheader("Operations")
    ops = summary["operations"]
    if len(ops):
        st.bar_chart(ops.set_index("day")[["requests", "client_errors", "server_errors"]])
        st.line_chart(ops.set_index("day")[["p50_ms", "p99_ms"]])
    else:
        st.caption("No requests in the audit log.")

    st.subheader(f"Prediction drift (last {window:g} days vs the reference profile)")
    drift = summary["drift"]
    if drift is None:
        st.caption(summary["drift_note"])
    else:
        from lepton_apps.monitor.report import drift_rows

        st.dataframe(drift_rows(drift).style.map(status_style, subset=["status"]), hide_index=True)

    st.subheader(f"Input drift of served requests (sampled, last {window:g} days)")
    if summary["input_drift"] is None:
        st.caption(summary["input_note"])
    else:
        from lepton_apps.monitor.report import drift_rows

        st.caption(summary["input_note"])
        st.dataframe(drift_rows(summary["input_drift"]).style.map(status_style, subset=["status"]), hide_index=True)

    st.subheader("Live performance per week")
    live = summary["live"]
    if version != "all" and len(live):
        live = live[live["model_version"] == version]
    counts = summary["outcomes"]
    st.caption(f"Outcomes: {counts['matched']} matched to served predictions, {counts['unmatched']} not (yet). "
               "Weeks younger than the label delay have labels_complete = False.")
    if len(live):
        st.dataframe(live, hide_index=True)
    else:
        st.caption("No served predictions yet.")


if __name__ == "__main__":
    with guarded("Could not show the monitoring summary"):
        render()
