"""The hub's home page: what the suite is, the installed templates and the registered models."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from numbers import Real

import pandas as pd
import streamlit as st

from lepton_apps import domains
from lepton_apps.errors import BundleError, LeptonError
from lepton_apps.registry import Registry, RegistryEntry
from lepton_apps.ui.common import cached_bundle, guarded, page_path, show_error

INTRO = """
Three AI solution templates on one shared PyTorch core — **medical imaging classification**,
**transaction fraud detection** and **customer-service question answering**. Point a template
at your own data and one command gives you a trained, evaluated and explained model bundle.
"""
WAYS = (
    (":material/web: Streamlit app", "This hub: a page per template to try a model on your own inputs."),
    (":material/code: Python API", "`MedicalClassifier`, `FraudScorer`, `SupportAssistant`: `load(bundle)`, then "
                                  "`predict` / `score` / `answer` and `explain`."),
    (":material/terminal: Batch-scoring CLI", "`lepton-apps <domain> predict` scores a whole table or folder, "
                                             "one output row per input row."),
    (":material/dns: HTTP service", "`lepton-apps serve`: a REST API with API keys, an audit log and "
                                    "Prometheus metrics."),
)
EMPTY_REGISTRY = """
**No models in the registry yet.** Create some with `lepton-apps demo` (a quick model for
every template, trained on the bundled demo data), or train on your own data with
`lepton-apps <domain> train` (for example `lepton-apps medical train --help`).
"""


def headline_metrics(metrics: dict, keys: tuple[str, ...] = ()) -> dict[str, float]:
    """Return the metrics to show: ``keys`` where given, else every numeric top-level metric."""
    wanted = keys or tuple(metrics)
    return {k: metrics[k] for k in wanted
            if isinstance(metrics.get(k), Real) and not isinstance(metrics.get(k), bool)}


def short_time(iso: str) -> str:
    """Return an ISO timestamp as ``YYYY-MM-DD HH:MM UTC`` (unparseable text is returned as is)."""
    try:
        when = dt.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return str(iso or "")
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M") + (" UTC" if when.tzinfo else "")


def bundle_table(entries: list[RegistryEntry], specs: dict[str, domains.DomainSpec],
                 problems: dict[str, LeptonError]) -> pd.DataFrame:
    """Return one row per registered bundle: identity, verification status and headline metrics."""
    rows = []
    for e in entries:
        spec = specs.get(e.domain)
        rows.append({"name": e.name, "domain": e.domain, "task": e.task, "aliases": ", ".join(e.aliases),
                     "created": short_time(e.created),
                     "status": "damaged" if e.name in problems else "verified",
                     **headline_metrics(e.metrics, spec.headline_metrics if spec else ())})
    return pd.DataFrame(rows)


def bundle_problems(registry: Registry, entries: list[RegistryEntry]) -> dict[str, LeptonError]:
    """Return the bundles that fail verification (checksums, version, unreadable bundle.json)."""
    problems: dict[str, LeptonError] = {}
    for e in entries:
        try:
            cached_bundle(str(e.path))
        except LeptonError as exc:
            problems[e.name] = exc
    for name, reason in registry.damaged().items():  # folders Registry.list() cannot read
        problems[name] = BundleError(reason, where=str(registry.home / name))
    return problems


def installed_domains() -> dict[str, domains.DomainSpec]:
    """Return the installed domains, or {} if they cannot be loaded (the hub shows that error)."""
    try:
        return domains.available_domains()
    except Exception:  # noqa: BLE001
        return {}


def render_templates(specs: dict[str, domains.DomainSpec], counts: dict[str, int]) -> None:
    """Show a card per installed domain, with a link to its page or a 'coming soon' note."""
    st.header("Templates")
    if not specs:
        st.warning("No domain templates are installed. Reinstall the package: `pip install -e .`")
        return
    for col, spec in zip(st.columns(len(specs)), specs.values()):
        with col, st.container(border=True):
            st.subheader(f"{spec.icon} {spec.title}")
            st.write(spec.summary)
            st.caption(f"{counts.get(spec.name, 0)} model(s) registered · `lepton-apps {spec.name} --help`")
            path = page_path(spec)
            if path is not None:
                st.page_link(str(path), label=f"Open {spec.title}", icon=":material/arrow_forward:")
            else:
                st.caption(":material/schedule: App page coming soon — the Python API and CLI work today.")


def render_registry(registry: Registry, specs: dict[str, domains.DomainSpec]) -> list[RegistryEntry]:
    """Show the registered bundles (or how to create one); return the entries."""
    st.header("Models in the registry")
    st.caption(f"Registry folder: `{registry.home.resolve()}` — set `LEPTON_HOME` to use another one.")
    entries = registry.list()
    if not entries:
        st.info(EMPTY_REGISTRY, icon=":material/inventory_2:")
    problems = bundle_problems(registry, entries)
    if entries:
        table = bundle_table(entries, specs, problems)
        metric_cols = {c: st.column_config.NumberColumn(c, format="%.4f")
                       for c in table.columns if pd.api.types.is_float_dtype(table[c])}
        st.dataframe(table, hide_index=True, column_config=metric_cols)
    for name, exc in problems.items():
        show_error(exc, f"Model {name!r} is damaged")
    return entries


NO_SERVICE = """
**No service configured on this machine.** Serve the registered models over HTTP with API keys
and an audit log: `lepton-apps keys create NAME --domains medical,finance` then `lepton-apps serve`
(see the README's "Serving over HTTP").
"""


def render_service(last: int = 20) -> None:
    """Show the service's API keys (names, domains, scopes — never secrets) and its last audit entries."""
    st.header("Service")
    from lepton_apps.store import configured_url

    url = configured_url()
    if url is None:
        st.info(NO_SERVICE, icon=":material/dns:")
        return
    from lepton_apps.store import Store

    store = Store.open(url)
    st.caption(f"Database: `{store.engine.url.render_as_string(hide_password=True)}` — "
               "`lepton-apps serve` uses it for API keys and the audit log.")
    keys = store.keys()
    left, right = st.columns([2, 3])
    with left:
        st.subheader("API keys")
        if keys:
            st.dataframe(pd.DataFrame([{"name": k.name, "id": k.id, "domains": ", ".join(k.domains), "scope": k.scope,
                                        "created (UTC)": k.created_at.strftime("%Y-%m-%d %H:%M"),
                                        "status": "revoked" if k.revoked_at else "active"} for k in keys]),
                         hide_index=True)
        else:
            st.caption("No keys yet: `lepton-apps keys create NAME --domains …`")
    with right:
        st.subheader(f"Last {last} requests")
        audit = store.audit_frame()
        if audit.empty:
            st.caption("No requests served yet.")
        else:
            shown = audit.tail(last).iloc[::-1]
            st.dataframe(shown[["created_at", "domain", "endpoint", "model_version", "key_id", "status",
                                "latency_ms"]].rename(columns={"created_at": "time (UTC)"}), hide_index=True)


def render() -> None:
    """Render the home page."""
    st.title("Lepton Apps")
    st.markdown(INTRO)
    for col, (title, text) in zip(st.columns(len(WAYS)), WAYS):
        col.markdown(f"**{title}**  \n{text}")
    specs = installed_domains()
    for name, reason in domains.domain_load_errors().items():
        st.error(f"The {name!r} template could not be loaded: {reason}. Reinstall lepton-apps (`make venv`) or "
                 "fix the plug-in.", icon=":material/error:")
    templates = st.container()  # filled last: the cards show counts read from the registry
    entries: list[RegistryEntry] = []
    with guarded("Could not read the model registry"):
        entries = render_registry(Registry(), specs)
    with templates, guarded("Could not show the templates"):
        render_templates(specs, Counter(e.domain for e in entries))
    with guarded("Could not read the service database"):
        render_service()


if __name__ == "__main__":
    render()
