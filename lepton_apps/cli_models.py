"""``lepton-apps models …``: list, inspect, register, remove and promote the bundles of the model registry
(mounted on the root command by :mod:`lepton_apps.cli`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lepton_apps.domains import available_domains

models_app = typer.Typer(help="List, inspect and promote the bundles in the model registry ($LEPTON_HOME).",
                         no_args_is_help=True)


@models_app.command("list")
def models_list(domain: Optional[str] = typer.Option(None, help="Only this domain (medical, finance, support)."),
                home: Optional[Path] = typer.Option(None, help="Registry folder (default $LEPTON_HOME or ./lepton_models).")):
    """List registered bundles, newest first, with aliases and headline metrics.

    Example: lepton-apps models list --domain medical
    """
    from lepton_apps.registry import Registry

    reg = Registry(home)
    entries = reg.list(domain)
    for name, reason in reg.damaged().items():
        typer.secho(f"warning: {name}: {reason}", err=True, fg=typer.colors.YELLOW)
    if not entries:
        typer.echo(f"No models in {reg.home}. Create one with 'lepton-apps demo' or 'lepton-apps <domain> train'.")
        return
    domains = available_domains()
    typer.echo(f"{'NAME':<40} {'DOMAIN':<8} {'TASK':<12} {'ALIASES':<18} {'CREATED':<26} METRICS")
    for e in entries:
        keys = domains[e.domain].headline_metrics if e.domain in domains else ()
        shown = {k: e.metrics[k] for k in keys if k in e.metrics} or {
            k: v for k, v in e.metrics.items() if isinstance(v, (int, float))}
        metrics = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in list(shown.items())[:4])
        typer.echo(f"{e.name:<40} {e.domain:<8} {e.task:<12} {','.join(e.aliases) or '-':<18} {e.created:<26} {metrics}")


@models_app.command("show")
def models_show(name: str = typer.Argument(..., help="Registry name, DOMAIN:ALIAS (medical:production) or a bundle path."),
                home: Optional[Path] = typer.Option(None, help="Registry folder.")):
    """Verify a bundle's checksums and print its bundle.json.

    Example: lepton-apps models show medical:latest
    """
    import json

    from lepton_apps.bundle import load_bundle
    from lepton_apps.registry import Registry

    bundle = load_bundle(Registry(home).resolve(name))
    typer.echo(f"# {bundle.path} (all {len(bundle.metadata.get('files', {}))} checksums verified)")
    typer.echo(json.dumps(bundle.metadata, indent=2))


@models_app.command("promote")
def models_promote(name: str = typer.Argument(..., help="Registry name of the bundle."),
                   alias: str = typer.Option("production", help="Alias to point at it: production or latest."),
                   reason: str = typer.Option("", help="Why (kept in the audit log with who promoted what)."),
                   force: bool = typer.Option(False, "--force", help="Promote even when it did worse than the "
                                              "current model as a shadow challenger."),
                   db_url: Optional[str] = typer.Option(None, "--db-url", envvar="LEPTON_DB_URL",
                                                        help="Service database (default: lepton.db in the registry "
                                                             "folder, when it exists)."),
                   home: Optional[Path] = typer.Option(None, help="Registry folder.")):
    """Point the domain's alias (default: production) at a registered bundle. When the service database holds
    its shadow answers (serve --challenger) with outcomes, a bundle that did worse than the current model on
    the domain's primary metric is refused unless --force; every promotion is recorded in the audit log.

    Example: lepton-apps models promote fraud-v2 --reason "retrained on November"
    """
    import getpass

    from lepton_apps.registry import Registry
    from lepton_apps.store import Store, configured_url

    registry = Registry(home)
    entry = registry.get(name)
    previous = next((e.name for e in registry.list(entry.domain) if alias in e.aliases), None)
    url = db_url or configured_url(home)
    store = Store.open(url, home=home) if url else None
    comparison = _promotion_check(store, entry, force) if store is not None and alias == "production" else None
    entry = registry.promote(name, alias)
    typer.echo(f"{entry.domain}:{alias} -> {entry.name}")
    if store is not None:
        _record_promotion(store, entry, alias, previous, getpass.getuser(), reason, force, comparison)
        typer.echo("recorded in the audit log (lepton-apps audit export --domain " + entry.domain + ")")


def _promotion_check(store, entry, force: bool):
    """Return the shadow comparison of ``entry`` against the served model (None when its domain declares no
    primary metric); ConfigError when it did worse and ``force`` is off."""
    from lepton_apps.domains import available_domains
    from lepton_apps.errors import ConfigError
    from lepton_apps.monitor.cli import describe
    from lepton_apps.monitor.compare import compare_models

    spec = available_domains().get(entry.domain)
    if spec is None or not spec.primary_metric or not spec.live_metrics:
        return None
    result = compare_models(store, entry.domain, spec.live_metrics_function(), spec.primary_metric,
                            key_field=spec.outcome_key, challenger=f"{entry.name}@")
    if result.get("difference") is not None and result["difference"] < 0:
        text = describe(result).replace("\n", "; ")
        if not force:
            raise ConfigError(f"{entry.name} did worse than the served model as a shadow challenger: {text}",
                              where="models promote", fix="keep the current model, or pass --force with a --reason")
        typer.secho(f"warning: promoting although it did worse: {text}", err=True, fg=typer.colors.YELLOW)
    else:
        typer.echo(f"shadow comparison: {result['verdict']}")
    return result


def _record_promotion(store, entry, alias, previous, user, reason, force, comparison) -> None:
    """Write who promoted which bundle to which alias, from what, why, and the evidence, as an audit row."""
    import datetime as dt
    import uuid

    from lepton_apps.store import AuditRow, digest

    summary = None
    if comparison is not None:
        summary = {k: comparison.get(k) for k in ("verdict", "pairs", "labelled", "primary_metric", "difference",
                                                  "ci95")}
    store.audit([AuditRow(request_id=uuid.uuid4().hex, created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
                          domain=entry.domain, endpoint="promote", model_ref=f"{entry.domain}:{alias}",
                          model_version=f"{entry.name}@{entry.created}", key_id=None, status=200, latency_ms=0.0,
                          n_items=0, input_digest=digest(entry.name.encode()),
                          result={"by": user, "reason": reason, "alias": alias, "from": previous, "to": entry.name,
                                  "forced": force, "comparison": summary})])


@models_app.command("register")
def models_register(bundle: Path = typer.Argument(..., help="Bundle folder to copy into the registry."),
                    name: Optional[str] = typer.Option(None, help="Registry name (default DOMAIN-TASK-TIMESTAMP)."),
                    home: Optional[Path] = typer.Option(None, help="Registry folder.")):
    """Verify a bundle folder and copy it into the registry as the domain's latest model.

    Example: lepton-apps models register runs/xray/bundle --name xray-v1
    """
    from lepton_apps.registry import Registry

    entry = Registry(home).register(bundle, name)
    typer.echo(f"registered {entry.name} ({entry.domain}) at {entry.path}")


@models_app.command("remove")
def models_remove(name: str = typer.Argument(..., help="Registry name of the bundle."),
                  home: Optional[Path] = typer.Option(None, help="Registry folder.")):
    """Delete a registered bundle and the aliases pointing at it.

    Example: lepton-apps models remove xray-v1
    """
    from lepton_apps.registry import Registry

    Registry(home).remove(name)
    typer.echo(f"removed {name}")
