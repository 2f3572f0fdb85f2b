"""``lepton-apps monitor …``: outcomes returned for served predictions, live performance per week, reference
profiles and drift reports. Imports nothing heavy until a verb runs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

monitor_app = typer.Typer(help="Watch served models: outcomes (labels) returned for their predictions, live "
                               "performance per week, drift against the bundle's reference profile.",
                          no_args_is_help=True)
_DB = typer.Option(None, "--db-url", envvar="LEPTON_DB_URL", help="Service database (default: SQLite lepton.db in "
                   "the registry folder).")
_HOME = typer.Option(None, help="Registry folder.")


def _domain_spec(domain: str):
    from lepton_apps.domains import available_domains
    from lepton_apps.errors import ConfigError

    specs = available_domains()
    if domain not in specs:
        raise ConfigError(f"unknown domain {domain!r}", where="DOMAIN", fix=f"use one of {', '.join(specs)}")
    spec = specs[domain]
    if spec.live_metrics is None:
        raise ConfigError(f"the {domain} template declares no live metrics", where="DomainSpec.live_metrics",
                          fix="add a live_metrics function to its DomainSpec")
    return spec


def read_outcomes(path: Path):
    """Return the outcome rows of a CSV / Parquet / JSON file (columns request_id and/or key, optional item,
    label). Raises DataError for a missing file, an unknown format or a file without the needed columns."""
    import pandas as pd

    from lepton_apps.errors import DataError

    if not path.is_file():
        raise DataError(f"file not found: {path}", fix="pass a CSV, Parquet or JSON file of outcomes")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    elif suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix in (".json", ".jsonl"):
        frame = pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
    else:
        raise DataError(f"unknown outcome file format {suffix!r}", where=str(path), fix="use .csv, .parquet or .json")
    if "label" not in frame.columns or not ({"request_id", "key"} & set(frame.columns)):
        raise DataError(f"the outcome file needs a 'label' column and a 'request_id' or 'key' column (it has "
                        f"{', '.join(map(str, frame.columns[:10]))})", where=str(path),
                        fix="columns: request_id (from the x-request-id header), item (0 = first), key (finance: "
                            "transaction_id), label")
    return frame.to_dict("records")


@monitor_app.command("labels")
def labels(file: Path = typer.Argument(..., help="CSV / Parquet / JSON: request_id (+ item) or key, and label."),
           domain: str = typer.Option(..., help="The domain the predictions came from."),
           db_url: Optional[str] = _DB, home: Optional[Path] = _HOME):
    """Attach outcomes (chargebacks, the radiologist's read, the agent's resolution) to served predictions.

    Every row is stored; the command says how many match a served prediction so far (the others may match
    predictions exported later, or name a wrong request id).

    Example: lepton-apps monitor labels chargebacks.csv --domain finance
    """
    from lepton_apps.monitor.live import attach, served_items
    from lepton_apps.store import Store

    spec = _domain_spec(domain)
    store = Store.open(db_url, home=home)
    stored = store.add_outcomes(domain, read_outcomes(file), source=file.name)
    _, counts = attach(served_items(store.audit_frame(domain=domain)), store.outcomes_frame(domain=domain),
                       spec.outcome_key)
    typer.echo(f"stored {stored} outcome(s) from {file.name}; of all {counts['outcomes']} {domain} outcomes, "
               f"{counts['matched']} match a served prediction, {counts['unmatched']} do not (yet)")


@monitor_app.command("live")
def live(domain: str = typer.Argument(..., help="medical, finance or support."),
         since: Optional[str] = typer.Option(None, help="Only predictions from this time (ISO)."),
         label_delay_days: Optional[float] = typer.Option(None, help="Days outcomes take to come back (default: "
                                                          "the template's)."),
         as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
         db_url: Optional[str] = _DB, home: Optional[Path] = _HOME):
    """Live performance per week and model version from served predictions and the outcomes returned for them.

    Example: lepton-apps monitor live finance --since 2026-11-01
    """
    from lepton_apps.config import parse_time
    from lepton_apps.monitor.live import live_report
    from lepton_apps.store import Store

    spec = _domain_spec(domain)
    delay = spec.label_delay_days if label_delay_days is None else label_delay_days
    table, counts = live_report(Store.open(db_url, home=home), domain, spec.live_metrics_function(),
                                key_field=spec.outcome_key, since=parse_time(since, "--since"), label_delay_days=delay)
    if as_json:
        typer.echo(json.dumps({"weeks": json.loads(table.to_json(orient="records")), "outcomes": counts}, indent=2))
        return
    if not len(table):
        typer.echo(f"no served {domain} predictions in the audit log" + (f" since {since}" if since else ""))
        return
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"outcomes: {counts['matched']} matched, {counts['unmatched']} unmatched; weeks younger than the "
               f"{delay:g}-day label delay have labels_complete = False")


def profile_folder(bundle: Path, home: Path | None = None) -> Path:
    """Return where a bundle's reference profile lives: its own ``profile/`` (written at training), else the one
    ``lepton-apps monitor profile`` wrote for an older bundle under ``$LEPTON_HOME/monitor/<bundle folder>/``."""
    from lepton_apps.registry import Registry

    own = Path(bundle) / "profile"
    if (own / "profile.json").is_file():
        return own
    return Registry(home).home / "monitor" / Path(bundle).resolve().name / "profile"


@monitor_app.command("profile")
def profile(model: str = typer.Argument(..., help="Bundle folder, registry name or DOMAIN:ALIAS."),
            data: str = typer.Argument(..., help="Reference data the model was validated on (the format its "
                                                 "predict verb takes)."),
            home: Optional[Path] = _HOME):
    """Write the reference profile of a bundle trained before profiles existed (newer bundles carry their own).

    Example: lepton-apps monitor profile finance:production validation.parquet
    """
    from lepton_apps.errors import ConfigError
    from lepton_apps.monitor.profile import build_profile
    from lepton_apps.predictor import load, resolve

    bundle, _ = resolve(model, home=home)
    if (Path(bundle) / "profile" / "profile.json").is_file():
        raise ConfigError(f"{Path(bundle).name} already carries the profile written at training",
                          where=str(bundle), fix="compare with it: lepton-apps monitor drift MODEL DATA")
    window = load(bundle, home=home).monitor_window(data)
    prof = build_profile(window.features, scores=window.scores, embeddings=window.embeddings, source=str(data),
                         judged=window.judged)
    folder = profile_folder(bundle, home)
    prof.save(folder)
    typer.echo(f"profile of {prof.n_rows} rows ({window.unreadable} unreadable) -> {folder}")


@monitor_app.command("drift")
def drift(model: str = typer.Argument(..., help="Bundle folder, registry name or DOMAIN:ALIAS."),
          data: str = typer.Argument(..., help="Current data (a batch file, a folder of images, questions)."),
          history: Optional[str] = typer.Option(None, help="finance: the transactions before DATA (CSV / Parquet, "
                                                "with labels where known; e.g. last month's), so that its 30-day "
                                                "features are built as in production. Default: the bundle's saved "
                                                "history, which covers a window that follows the training data."),
          out: Optional[Path] = typer.Option(None, help="Write the report as JSON here."),
          fail_on: str = typer.Option("drift", help="Exit 1 when the overall status is at least this: drift, warn "
                                                    "or never."),
          home: Optional[Path] = _HOME):
    """Drift and data quality of current data against the bundle's reference profile: per feature, the
    predictions, the embeddings (images, questions); every reason in one line. Exits 1 on drift (for cron / CI).
    What cannot be judged fairly (finance: rows without the history or labels their window features need) is
    left out and said, not reported as drift.

    Example: lepton-apps monitor drift finance:production this_week.parquet --history last_month.parquet
    """
    from lepton_apps.errors import ConfigError
    from lepton_apps.io import atomic_write_json
    from lepton_apps.monitor.drift import compare_window
    from lepton_apps.monitor.profile import Profile
    from lepton_apps.predictor import load, resolve

    if fail_on not in ("drift", "warn", "never"):
        raise ConfigError(f"--fail-on must be drift, warn or never, not {fail_on!r}", where="--fail-on",
                          fix="use drift (default), warn or never")
    bundle, _ = resolve(model, home=home)
    folder = profile_folder(bundle, home)
    if not (folder / "profile.json").is_file():
        raise ConfigError(f"{Path(bundle).name} has no reference profile", where=str(folder),
                          fix="retrain it (new bundles carry one) or write one from its validation data: "
                              "lepton-apps monitor profile MODEL VALIDATION_DATA")
    model = load(bundle, home=home)
    if history is not None and model.domain != "finance":
        raise ConfigError(f"--history is for finance windows, not {model.domain}", where="--history",
                          fix="leave it out: this domain's inputs are judged one by one")
    window = model.monitor_window(data, **({"history": history} if history is not None else {}))
    report = compare_window(Profile.load(folder), window)
    for reason in report.reasons:
        typer.echo(reason)
    for line in not_judged_lines(report):
        typer.echo(line)
    typer.echo(f"overall: {report.status}" + (" (on what could be judged)" if report.not_judged else ""))
    if out:
        atomic_write_json(out, report.to_dict())
    if fail_on != "never" and (report.status == "drift" or (fail_on == "warn" and report.status == "warn")):
        raise typer.Exit(1)


def not_judged_lines(report) -> list[str]:
    """Return one line per reason some rows were left out of a report (names sharing a reason together)."""
    groups: dict[str, list[dict]] = {}
    for entry in report.not_judged:
        groups.setdefault(entry["why"], []).append(entry)
    lines = []
    for why, entries in groups.items():
        names = ", ".join(f"{e['name']} ({e['judged']:,} of {e['rows']:,} rows)" for e in entries)
        lines.append(f"not judged on every row: {names}: {why}")
    if lines and report.judge_hint:
        lines.append(f"to judge every row: {report.judge_hint}")
    return lines


def served_bundle(domain: str, model: str | None, home: Path | None):
    """Return (bundle folder, its reference Profile or None): ``model``, else DOMAIN:production, else latest;
    (None, None) when the registry has none."""
    from lepton_apps.errors import LeptonError
    from lepton_apps.monitor.profile import Profile
    from lepton_apps.predictor import resolve

    refs = [model] if model else [f"{domain}:production", f"{domain}:latest"]
    for i, ref in enumerate(refs):
        try:
            bundle, _ = resolve(ref, home=home, domain=domain)
        except LeptonError:
            if model or i == len(refs) - 1:
                if model:
                    raise
                return None, None
            continue
        folder = profile_folder(bundle, home)
        return Path(bundle), Profile.load(folder) if (folder / "profile.json").is_file() else None
    return None, None


def _summary(domain, model, since, window_days, db_url, home):
    from lepton_apps.config import parse_time
    from lepton_apps.monitor.report import summarize
    from lepton_apps.store import Store

    spec = _domain_spec(domain)
    bundle, prof = served_bundle(domain, model, home)
    return summarize(Store.open(db_url, home=home), domain, spec, bundle=bundle, profile=prof,
                     since=parse_time(since, "--since"), window_days=window_days)


_MODEL = typer.Option(None, help="The served bundle (default: DOMAIN:production, else DOMAIN:latest).")
_SINCE = typer.Option(None, help="Only requests from this time (ISO, e.g. 2026-11-01).")
_WINDOW = typer.Option(7.0, help="Days in the window checked for drift, errors and latency.")


@monitor_app.command("report")
def report(domain: str = typer.Argument(..., help="medical, finance or support."),
           out: Path = typer.Option(..., "--out", "-o", help="The HTML file to write."),
           model: Optional[str] = _MODEL, since: Optional[str] = _SINCE, window_days: float = _WINDOW,
           db_url: Optional[str] = _DB, home: Optional[Path] = _HOME):
    """Write a standalone HTML report: requests, errors and latency per day, served scores per week, prediction
    drift against the bundle's profile with traffic lights, live metrics from returned outcomes.

    Example: lepton-apps monitor report finance --out finance_monitor.html
    """
    from lepton_apps.io import atomic_path
    from lepton_apps.monitor.report import Thresholds, check, render_html

    summary = _summary(domain, model, since, window_days, db_url, home)
    page = render_html(summary, check(summary, Thresholds()))
    with atomic_path(out) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    typer.echo(f"report -> {out}")


@monitor_app.command("check")
def check_cmd(domain: str = typer.Argument(..., help="medical, finance or support."),
              model: Optional[str] = _MODEL, since: Optional[str] = _SINCE, window_days: float = _WINDOW,
              max_error_rate: float = typer.Option(0.01, help="Alert when more of the window's requests got 5xx."),
              max_p99_ms: Optional[float] = typer.Option(None, help="Alert when a day's p99 latency is higher."),
              drift_status: str = typer.Option("drift", help="Alert on prediction drift at this status or worse: "
                                                             "drift or warn."),
              minimum: list[str] = typer.Option([], "--min", help="METRIC=VALUE: alert when the latest labelled "
                                                "week's metric is lower (e.g. --min roc_auc=0.85); repeatable."),
              webhook: Optional[str] = typer.Option(None, envvar="LEPTON_MONITOR_WEBHOOK", help="Also POST the result "
                                                    "as JSON to this URL."),
              db_url: Optional[str] = _DB, home: Optional[Path] = _HOME):
    """Check a served model for cron or CI: exit 1 with the reasons on stdout when errors, latency, prediction
    drift or a live metric cross their thresholds; exit 0 and "ok" otherwise.

    Example: lepton-apps monitor check finance --min pr_auc=0.6 --webhook https://hooks.example.org/fraud
    """
    from lepton_apps.errors import ConfigError
    from lepton_apps.monitor.report import Thresholds, check, to_json

    if drift_status not in ("drift", "warn"):
        raise ConfigError(f"--drift-status must be drift or warn, not {drift_status!r}", where="--drift-status",
                          fix="use drift (default) or warn")
    mins = {}
    for item in minimum:
        name, _, value = item.partition("=")
        try:
            mins[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"cannot read {item!r} as METRIC=VALUE", where="--min",
                              fix="e.g. --min roc_auc=0.85") from None
    summary = _summary(domain, model, since, window_days, db_url, home)
    reasons = check(summary, Thresholds(drift_status=drift_status, max_error_rate=max_error_rate,
                                        max_p99_ms=max_p99_ms, minimum=mins))
    for reason in reasons:
        typer.echo(reason)
    if not reasons:
        typer.echo(f"{domain}: ok")
    if webhook:
        _post(webhook, to_json(summary, reasons))
    if reasons:
        raise typer.Exit(1)


def _post(url: str, body: dict) -> None:
    """POST ``body`` as JSON to ``url``; a failure is printed on stderr (the check's own exit code stands)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            typer.echo(f"webhook: {url} answered {r.status}")
    except (urllib.error.URLError, OSError) as exc:
        typer.secho(f"warning: the webhook {url} could not be reached ({exc}); the check's result is above",
                    err=True, fg=typer.colors.YELLOW)


@monitor_app.command("compare")
def compare_cmd(domain: str = typer.Argument(..., help="medical, finance or support."),
                challenger: Optional[str] = typer.Option(None, help="Only this challenger (its registry name); "
                                                         "default: every shadow answer."),
                since: Optional[str] = _SINCE, as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                db_url: Optional[str] = _DB, home: Optional[Path] = _HOME):
    """Champion vs challenger on the same requests (serve --challenger): how often they agree and, where
    outcomes came back, which is better on the domain's primary metric with a 95 % paired bootstrap interval.

    Example: lepton-apps monitor compare finance --challenger fraud-v2
    """
    from lepton_apps.config import parse_time
    from lepton_apps.monitor.compare import compare_models
    from lepton_apps.store import Store

    spec = _domain_spec(domain)
    result = compare_models(Store.open(db_url, home=home), domain, spec.live_metrics_function(), spec.primary_metric,
                            key_field=spec.outcome_key, since=parse_time(since, "--since"), challenger=challenger)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    typer.echo(describe(result))


def describe(result: dict) -> str:
    """Return a comparison as a few readable lines."""
    lines = [f"{result['pairs']} requests answered by both; verdict: {result['verdict']}"]
    if result.get("pairs"):
        lines.append(f"champion {', '.join(result['champion_versions'])} vs challenger "
                     f"{', '.join(result['challenger_versions'])}")
        for field, stats in result.get("agreement", {}).items():
            lines.append(f"  {field}: " + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))
    if "difference" in result:
        m = result["primary_metric"]
        lines.append(f"{m} on {result['labelled']} labelled requests: champion "
                     f"{result['metrics']['champion'][m]:.4f}, challenger {result['metrics']['challenger'][m]:.4f}; "
                     f"difference {result['difference']:+.4f} (95 % CI {result['ci95'][0]:+.4f} to "
                     f"{result['ci95'][1]:+.4f})")
    return "\n".join(lines)
