"""The ``lepton-apps`` command: ``demo``, ``ui``, ``serve``, the ``models`` / ``keys`` / ``audit`` / ``monitor``
sub-commands (:mod:`~lepton_apps.cli_models`, :mod:`~lepton_apps.cli_service`, :mod:`~lepton_apps.monitor.cli`)
and one sub-command per domain.

Every LeptonError is printed as one line (what, where, how to fix) with exit code 2;
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from lepton_apps.cli_models import models_app
from lepton_apps.cli_service import audit_batch, audit_app, keys_app
from lepton_apps.domains import available_domains, domain_load_errors
from lepton_apps.errors import LeptonError
from lepton_apps.monitor.cli import monitor_app  # the monitor verbs (their heavy imports are lazy)

app = typer.Typer(
    name="lepton-apps",
    help=("Lepton Apps: medical imaging, fraud detection and customer-service QA templates on one PyTorch core.\n\n"
          "Example: lepton-apps demo && lepton-apps ui"),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(monitor_app, name="monitor")
app.add_typer(audit_app, name="audit")

_STATE = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors.")):
    _STATE["debug"] = debug


@app.command()
def demo(workdir: Path = typer.Option(Path("demo_data"), help="Where demo data is written."),
         domain: Optional[list[str]] = typer.Option(None, help="Only these domains (repeatable)."),
         force: bool = typer.Option(False, help="Rebuild even if a demo model is already registered."),
         home: Optional[Path] = typer.Option(None, help="Registry folder.")):
    """Build each domain's demo data and train its quick demo model into the registry.

    Example: lepton-apps demo --domain medical
    """
    from lepton_apps.registry import Registry

    reg = Registry(home)
    domains = available_domains()
    unknown = set(domain or []) - set(domains)
    if unknown:
        raise LeptonError(f"unknown domain(s): {', '.join(sorted(unknown))}", fix=f"choose from: {', '.join(domains)}")
    built = 0
    for spec in domains.values():
        if domain and spec.name not in domain:
            continue
        builder = spec.demo_builder()
        if builder is None:
            typer.echo(f"[{spec.name}] no demo yet: this template has no demo builder in this version")
            continue
        existing = [e for e in reg.list(spec.name) if e.name.startswith(f"{spec.name}-demo")]
        if existing and not force:
            typer.echo(f"[{spec.name}] demo model {existing[0].name} already registered (use --force to rebuild)")
            continue
        typer.echo(f"[{spec.name}] building demo data and model in {workdir / spec.name} …")
        names = builder(workdir / spec.name, reg)
        for name in [names] if isinstance(names, str) else names:
            typer.echo(f"[{spec.name}] registered {name}")
            built += 1
    typer.echo(f"demo: {built} model(s) built; registry at {reg.home}")


@app.command()
def ui(port: int = typer.Option(8501, help="Port to serve on."),
       address: str = typer.Option("localhost", help="Address to bind (localhost keeps it private)."),
       home: Optional[Path] = typer.Option(None, help="Registry folder.")):
    """Start the Streamlit hub with every installed domain's page.

    Example: lepton-apps ui --port 8501
    """
    hub = Path(__file__).parent / "ui" / "hub.py"
    env = dict(os.environ)
    if home is not None:
        env["LEPTON_HOME"] = str(home)
    typer.echo(f"Lepton Apps hub: http://{address}:{port}  (Ctrl+C to stop)")
    cmd = [sys.executable, "-m", "streamlit", "run", str(hub), "--server.port", str(port),
           "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal"]
    sys.stdout.flush()
    if os.name == "posix":
        os.execve(sys.executable, cmd, env)  # streamlit takes over this process, so signals reach it directly
    raise typer.Exit(subprocess.call(cmd, env=env))


@app.command()
def serve(models: Optional[list[str]] = typer.Argument(None, help="Bundles to serve (folders, registry names or "
                                                     "DOMAIN:ALIAS), one per domain; default: each domain's "
                                                     "production model, else its latest."),
          host: str = typer.Option("127.0.0.1", help="Address to bind (127.0.0.1 keeps it on this machine)."),
          port: int = typer.Option(8000, help="Port to serve on."),
          timeout: float = typer.Option(30.0, help="Seconds a request may take before it is answered 504."),
          max_body_mb: float = typer.Option(20.0, help="Largest request body in MB (larger ones get 413)."),
          max_batch: int = typer.Option(64, help="Most items scored in one micro-batch (medical, support)."),
          max_wait_ms: float = typer.Option(5.0, help="Longest wait for more requests to join a micro-batch."),
          batching: bool = typer.Option(True, help="Micro-batch requests that arrive together."),
          device: str = typer.Option("auto", help="auto, cpu or cuda."),
          no_auth: bool = typer.Option(False, "--no-auth", help="Serve without API keys (local use only; "
                                       "a warning is printed)."),
          db_url: Optional[str] = typer.Option(None, envvar="LEPTON_DB_URL", help="Database for keys and the audit "
                                               "log (default: SQLite lepton.db in the registry folder)."),
          audit_free_text: bool = typer.Option(False, help="Keep support questions' text in the audit log "
                                               "(default: a digest only)."),
          audit_optional: bool = typer.Option(False, help="Answer predictions even when the audit row cannot be "
                                              "written (default: 503)."),
          watch_s: float = typer.Option(10.0, help="Seconds between checks of the served aliases (a promoted "
                                        "bundle is swapped in); 0 = only POST /v1/admin/reload."),
          engine: str = typer.Option("uvicorn", help="uvicorn (one process) or ray (--replicas copies behind Ray "
                                     "Serve's HTTP proxy; needs lepton-apps[ray])."),
          replicas: int = typer.Option(1, help="Copies of the service under --engine ray, each loading the models."),
          state_url: Optional[str] = typer.Option(None, envvar="LEPTON_STATE_URL", help="Redis URL "
                                                  "(redis://host:6379/0) for finance's online per-entity state, "
                                                  "shared by every replica (default: in this process)."),
          state_prefix: str = typer.Option("lepton:finance:", help="Key prefix of that state in Redis."),
          monitor_sample: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of predict requests (0–1) whose "
                                               "monitoring window "
                                               "(model features, image statistics and embeddings, question embeddings "
                                               "— never raw inputs) is stored for input-drift reports."),
          backend: list[str] = typer.Option([], help="How medical / support models run: torch, onnx, int8 or auto "
                                            "(default: onnx on a CPU with onnxruntime); BACKEND for both or "
                                            "DOMAIN=BACKEND (repeatable). The backend ends each result's "
                                            "model_version, hence the audit log."),
          challenger: list[str] = typer.Option([], help="A bundle scored in shadow beside its domain's model: "
                                               "same requests, answers logged in the audit log, never returned "
                                               "(repeatable, one per domain; compare: lepton-apps monitor compare)."),
          home: Optional[Path] = typer.Option(None, help="Registry folder.")):
    """Serve models over HTTP (FastAPI on uvicorn, or in Ray Serve replicas with --engine ray) with API keys and
    an audit log: /v1/<domain>/predict, /explain, /v1/models, /healthz, /readyz, /metrics, OpenAPI docs at /docs.

    Example: lepton-apps keys create triage --domains medical && lepton-apps serve medical:latest --port 8000
    """
    from lepton_apps.errors import require

    require("fastapi", feature="The HTTP service", extra="serve")
    uvicorn = require("uvicorn", feature="The HTTP service", extra="serve")
    from lepton_apps.serve import ray_engine, refs_from_args

    ray_engine.check_engine(engine, replicas)
    if engine == "ray":
        ray_engine.require_ray_serve()
    from lepton_apps.serve.app import ServeConfig, create_app
    from lepton_apps.store import Store

    refs = refs_from_args(list(models or []), home)
    cfg = ServeConfig(max_body_bytes=int(max_body_mb * 1024 * 1024), timeout_s=timeout, max_batch=max_batch,
                      max_wait_ms=max_wait_ms, batching=batching, auth=not no_auth,
                      audit_required=not audit_optional, audit_free_text=audit_free_text, watch_s=watch_s,
                      state_url=state_url, state_prefix=state_prefix,
                      challengers=challenger_refs(challenger, refs, home), monitor_sample=monitor_sample,
                      backends=backend_choices(backend, refs))
    store = Store.open(db_url, home=home)
    application = create_app(refs, home=home, device=device, config=cfg, store=store)
    if no_auth:
        typer.secho("warning: --no-auth: anyone who can reach the port can use the models; keep the default "
                    "127.0.0.1", err=True, fg=typer.colors.YELLOW)
    elif not [k for k in store.keys() if k.active]:
        typer.secho("warning: no active API keys yet: every model request will get 401 until you create one "
                    "with 'lepton-apps keys create NAME --domains …'", err=True, fg=typer.colors.YELLOW)
    typer.echo(f"serving {', '.join(f'{d}={r}' for d, r in refs.items())} on http://{host}:{port} "
               f"(docs: /docs, ready: /readyz; audit log in {store.engine.url.render_as_string(hide_password=True)})")
    if engine == "ray":  # `application` above checked the set-up; each replica builds its own
        if "finance" in refs and replicas > 1 and not cfg.state_url:
            typer.secho("warning: finance score_one keeps its per-customer history in each replica; pass a Redis "
                        "--state-url so the replicas share it", err=True, fg=typer.colors.YELLOW)
        ray_engine.run(refs, home=home, device=device, config=cfg, host=host, port=port, replicas=replicas,
                       db_url=store.engine.url.render_as_string(hide_password=False), echo=typer.echo)
        return
    uvicorn.run(application, host=host, port=port, log_level="warning")


def backend_choices(given: list[str], refs: dict[str, str]) -> dict[str, str]:
    """Return ``{domain: backend}`` from ``--backend`` values (``BACKEND`` for every served domain that has
    backends, or ``DOMAIN=BACKEND``); ConfigError for an unknown backend, or a domain not served / without one."""
    from lepton_apps.errors import ConfigError
    from lepton_apps.export import BACKENDS

    with_backends = ("medical", "support")
    out: dict[str, str] = {}
    for value in given:
        domain, _, name = value.rpartition("=")
        if name not in BACKENDS:
            raise ConfigError(f"unknown backend {name!r}", where=f"--backend {value}",
                              fix=f"use one of {', '.join(BACKENDS)}, optionally as DOMAIN=BACKEND")
        if domain and domain not in refs:
            raise ConfigError(f"--backend names {domain!r}, which is not served", where=f"--backend {value}",
                              fix=f"use one of the served domains: {', '.join(refs)}")
        if domain and domain not in with_backends:
            raise ConfigError(f"the {domain} model has no ONNX backend", where=f"--backend {value}",
                              fix=f"give backends to {' or '.join(with_backends)} only")
        for d in [domain] if domain else [d for d in refs if d in with_backends]:
            out[d] = name
    return out


def challenger_refs(challengers: list[str], refs: dict[str, str], home) -> dict[str, str]:
    """Return ``{domain: ref}`` of the ``--challenger`` bundles; ConfigError for a domain that is not served or
    given twice."""
    from lepton_apps.errors import ConfigError
    from lepton_apps.predictor import resolve

    out: dict[str, str] = {}
    for ref in challengers:
        _, domain = resolve(ref, home=home)
        if domain not in refs:
            raise ConfigError(f"the challenger {ref!r} is a {domain} model, but no {domain} model is served",
                              where="--challenger", fix=f"serve a {domain} model too, or drop the challenger")
        if domain in out:
            raise ConfigError(f"two {domain} challengers given ({out[domain]!r} and {ref!r})", where="--challenger",
                              fix="shadow one challenger per domain")
        out[domain] = ref
    return out



def load_and_warn(loader):
    """Return ``loader()``, printing the warnings it raised (e.g. an int8 backend refused by its gate, the
    fp32 backend used instead) as one yellow line each on stderr instead of Python's warning format."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = loader()
    for w in caught:
        typer.secho(f"warning: {w.message}", err=True, fg=typer.colors.YELLOW)
    return loaded


def predict_command(domain: str):
    """Return the ``lepton-apps <domain> predict`` verb, the same for every domain with a predictor:
    load any bundle of ``domain`` through :func:`lepton_apps.predictor.load` and score a file with
    its ``predict_file`` (one output row per input row, an ``error`` column, resumable)."""

    def predict(model: str = typer.Argument(..., help=f"Bundle folder, registry name or {domain}:latest."),
                source: Path = typer.Argument(..., help="What to score (see the template's README): a table "
                                              "(CSV / Parquet), or for medical a folder or manifest.csv."),
                out: Path = typer.Option(..., "--out", "-o", help="Output .parquet or .csv (one row per input row)."),
                chunk_size: Optional[int] = typer.Option(None, help="Rows per resumable chunk (default: the "
                                                         "template's)."),
                resume: bool = typer.Option(True, help="Reuse finished chunks of an interrupted run."),
                backend: Optional[str] = typer.Option(None, help="medical, support: torch, onnx (fp32 ONNX Runtime), "
                                                      "int8 (only where it passed the accuracy gate) or auto "
                                                      "(default: onnx on a CPU with onnxruntime, else torch)."),
                export: Optional[Path] = typer.Option(None, help="medical, support: an export folder of this bundle "
                                                      "(lepton-apps DOMAIN export) to predict with."),
                home: Optional[Path] = typer.Option(None, help="Registry folder.")):
        from lepton_apps.predictor import load

        import time

        predictor = load_and_warn(lambda: load(model, home=home, domain=domain, backend=backend, export=export))
        start = time.perf_counter()
        res = predictor.predict_file(source, out, resume=resume, chunk_size=chunk_size)
        typer.echo(f"{res.n_rows} rows ({res.n_errors} with errors) by {predictor.model_version} -> {res.output}"
                   + (f"; {res.resumed_chunks} chunk(s) reused" if res.resumed_chunks else ""))
        audit_batch(domain, model, predictor, source, res, time.perf_counter() - start, home)

    example = {"medical": "scans/", "finance": "transactions.csv", "support": "questions.csv"}.get(domain, "INPUT")
    predict.__doc__ = (f"Score a file in batch: one output row per input row, an 'error' column for rows that "
                       f"cannot be scored; resumable.\n\nExample: lepton-apps {domain} predict {domain}:latest "
                       f"{example} --out predictions.parquet")
    return predict


def evaluate_command(domain: str, spec):
    """Return the ``lepton-apps <domain> evaluate MODEL [DATA] [--out DIR] [--json]`` verb, the same for every
    domain: load any bundle of ``domain`` through :func:`lepton_apps.predictor.load`, call its ``evaluate``
    with the options the domain declares in its :class:`~lepton_apps.domains.EvaluateSpec`, print the summary."""
    import inspect

    def evaluate(**kwargs):
        import json

        from lepton_apps.predictor import load

        model, data, out, home, as_json = (kwargs.pop(k) for k in ("model", "data", "out", "home", "json_out"))
        predictor = load(model, home=home, domain=domain)
        result = predictor.evaluate(data, out=out, **kwargs)
        typer.echo(json.dumps(result.to_dict()["metrics"], indent=2) if as_json else result.summary)
        if result.folder:
            typer.echo(f"report and plots in {result.folder}")

    P = inspect.Parameter
    data_default = ... if spec.data_required else None
    params = [P("model", P.POSITIONAL_OR_KEYWORD, annotation=str,
                default=typer.Argument(..., help=f"Bundle folder, registry name or {domain}:latest.")),
              P("data", P.POSITIONAL_OR_KEYWORD, annotation=Optional[str],
                default=typer.Argument(data_default, help=spec.data_help))]
    for opt in spec.options:
        params.append(P(opt.name, P.POSITIONAL_OR_KEYWORD, annotation=Optional[opt.type] if opt.default is None
                        else opt.type, default=typer.Option(opt.default, help=opt.help)))
    params += [P("out", P.POSITIONAL_OR_KEYWORD, annotation=Optional[Path],
                 default=typer.Option(None, help="Folder for report.json and the plots.")),
               P("json_out", P.POSITIONAL_OR_KEYWORD, annotation=bool,
                 default=typer.Option(False, "--json", help="Print every metric as JSON instead of the summary.")),
               P("home", P.POSITIONAL_OR_KEYWORD, annotation=Optional[Path],
                 default=typer.Option(None, help="Registry folder."))]
    evaluate.__signature__ = inspect.Signature(params)
    evaluate.__annotations__ = {}
    example = {"medical": "xrays/test/", "finance": "new_month.parquet", "support": "questions.json"}.get(domain, "DATA")
    evaluate.__doc__ = (f"Measure a model on labelled data with the {domain} template's own metrics, at the bundle's "
                        f"operating point; --out writes report.json and the plots.\n\nExample: lepton-apps {domain} "
                        f"evaluate {domain}:latest {example} --out eval/")
    return evaluate


def _mount_domains() -> None:
    if _STATE.get("mounted"):
        return
    _STATE["mounted"] = True
    for name, reason in domain_load_errors().items():
        typer.secho(f"warning: the {name!r} template is unavailable: {reason}", err=True, fg=typer.colors.YELLOW)
    for spec in available_domains().values():
        if spec.cli is None:
            continue
        if spec.predictor and not any(c.name == "predict" for c in spec.cli.registered_commands):
            spec.cli.command("predict")(predict_command(spec.name))  # the one batch verb, written once here
        if spec.predictor and spec.evaluate and not any(c.name == "evaluate" for c in spec.cli.registered_commands):
            spec.cli.command("evaluate")(evaluate_command(spec.name, spec.evaluate))
        app.add_typer(spec.cli, name=spec.name, help=spec.cli.info.help or spec.summary)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    _mount_domains()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the verb
    argv = [a for a in argv if a != "--debug"]
    _STATE["debug"] = debug
    try:
        code = app(args=argv, prog_name="lepton-apps", standalone_mode=False)
    except LeptonError as exc:
        if debug:
            raise
        typer.secho(f"lepton-apps: {exc.kind}: {exc}", err=True, fg=typer.colors.RED)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):  # click usage errors
            exc.show()
            return exc.exit_code
        if type(exc).__name__ == "Abort":
            return 1
        if debug:
            raise
        typer.secho(f"lepton-apps: unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback, "
                    "and report it if it persists)", err=True, fg=typer.colors.RED)
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
