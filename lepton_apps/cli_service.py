"""``lepton-apps keys …`` and ``lepton-apps audit …``: the service database's API keys and audit log, and the
audit row a batch-scoring run writes (mounted on the root command by :mod:`lepton_apps.cli`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

keys_app = typer.Typer(help="Create, list and revoke the service's API keys (stored hashed in the service "
                                "database).", no_args_is_help=True)
audit_app = typer.Typer(help="The service's audit log: one row per request to a model endpoint.",
                        no_args_is_help=True)
_DB_OPTION = typer.Option(None, "--db-url", envvar="LEPTON_DB_URL", help="Service database (default: SQLite "
                          "lepton.db in the registry folder).")


@keys_app.command("create")
def keys_create(name: str = typer.Argument(..., help="A name for the key (who or what uses it)."),
                domains: str = typer.Option(..., help="Comma-separated domains it may use, or '*' for all."),
                scope: str = typer.Option("read", help="read (predict, explain) or admin (also reload)."),
                db_url: Optional[str] = _DB_OPTION, home: Optional[Path] = typer.Option(None, help="Registry folder.")):
    """Create an API key and print its token once (only a hash is stored).

    Example: lepton-apps keys create triage-app --domains medical,finance
    """
    from lepton_apps.store import Store

    key, token = Store.open(db_url, home=home).create_key(name, domains.split(","), scope)
    typer.echo(f"created key {key.name!r} (id {key.id}, domains {','.join(key.domains)}, scope {key.scope})")
    typer.echo("token (shown only now; send it as 'Authorization: Bearer <token>'):")
    typer.echo(token)


@keys_app.command("list")
def keys_list(db_url: Optional[str] = _DB_OPTION, home: Optional[Path] = typer.Option(None, help="Registry folder.")):
    """List the keys: name, id, domains, scope, created, revoked (never secrets).

    Example: lepton-apps keys list
    """
    from lepton_apps.store import Store

    keys = Store.open(db_url, home=home).keys()
    if not keys:
        typer.echo("No API keys. Create one with 'lepton-apps keys create NAME --domains …'.")
        return
    typer.echo(f"{'NAME':<24} {'ID':<14} {'DOMAINS':<28} {'SCOPE':<6} {'CREATED (UTC)':<20} REVOKED")
    for k in keys:
        typer.echo(f"{k.name:<24} {k.id:<14} {','.join(k.domains):<28} {k.scope:<6} "
                   f"{k.created_at:%Y-%m-%d %H:%M:%S}  {k.revoked_at or '-'}")


@keys_app.command("revoke")
def keys_revoke(name: str = typer.Argument(..., help="Name of the key."), db_url: Optional[str] = _DB_OPTION,
                home: Optional[Path] = typer.Option(None, help="Registry folder.")):
    """Revoke a key: requests with it get 401 from then on.

    Example: lepton-apps keys revoke triage-app
    """
    from lepton_apps.store import Store

    key = Store.open(db_url, home=home).revoke_key(name)
    typer.echo(f"revoked {key.name!r} (id {key.id}) at {key.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


@audit_app.command("export")
def audit_export(out: Path = typer.Option(..., "--out", "-o", help="Output .parquet or .csv."),
                 since: Optional[str] = typer.Option(None, help="From this time (ISO, e.g. 2026-12-01 or "
                                                     "2026-12-01T08:00); UTC unless it has an offset."),
                 until: Optional[str] = typer.Option(None, help="Before this time (ISO)."),
                 domain: Optional[str] = typer.Option(None, help="Only this domain."),
                 db_url: Optional[str] = _DB_OPTION, home: Optional[Path] = typer.Option(None, help="Registry folder.")):
    """Export audit rows (request id, time, domain, model version, key id, status, latency, result, input digest).

    Example: lepton-apps audit export --since 2026-12-01 --out audit.parquet
    """
    from lepton_apps.config import parse_time
    from lepton_apps.errors import ConfigError
    from lepton_apps.io import atomic_path
    from lepton_apps.store import Store

    if out.suffix.lower() not in (".parquet", ".csv"):
        raise ConfigError(f"unknown output format {out.suffix!r}", where="--out", fix="name the file .parquet or .csv")
    frame = Store.open(db_url, home=home).audit_frame(parse_time(since, "--since"), parse_time(until, "--until"),
                                                      domain)
    with atomic_path(out) as tmp:
        frame.to_parquet(tmp, index=False) if out.suffix.lower() == ".parquet" else frame.to_csv(tmp, index=False)
    typer.echo(f"{len(frame)} audit rows -> {out}")


def audit_batch(domain: str, model: str, predictor, source: Path, res, seconds: float, home) -> None:
    """Record a batch-scoring run in the service's audit log when a service database is configured."""
    import datetime as dt
    import uuid

    from lepton_apps.store import AuditRow, Store, configured_url, source_digest

    url = configured_url(home)
    if url is None:
        return
    row = AuditRow(request_id=uuid.uuid4().hex, created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
                   domain=domain, endpoint="batch", model_ref=str(model), model_version=predictor.model_version,
                   key_id=None, status=200, latency_ms=seconds * 1000, n_items=int(res.n_rows),
                   input_digest=source_digest(source),
                   result={"rows": int(res.n_rows), "errors": int(res.n_errors), "output": str(res.output)})
    Store.open(url, home=home).audit([row])
    typer.echo(f"recorded in the audit log ({url.split('://')[0]})")
