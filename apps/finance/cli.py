"""``lepton-apps finance …``: check, demo-data, train, evaluate, score, compile, export (``predict``, the verb every template shares, is added by the core)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from lepton_apps.console import echo_progress

cli = typer.Typer(help="Transaction fraud detection: CSV/Parquet transactions, leak-free features, LightGBM.",
                  no_args_is_help=True)

_ROLE_HELP = "Column name (default: looked up among common names; '' = the table has none)."
# the schema-mapping flags every command that reads a table takes (check, train)
Role = Annotated[Optional[str], typer.Option(help=_ROLE_HELP)]
IdRole = Annotated[Optional[str], typer.Option("--id", help=_ROLE_HELP)]


def _schema_overrides(id_col, timestamp, amount, customer, terminal, label, categorical, exclude) -> dict:
    out = {k: v for k, v in dict(id=id_col, timestamp=timestamp, amount=amount, customer=customer,
                                 terminal=terminal, label=label).items() if v is not None}
    if categorical:
        out["categorical"] = list(categorical)
    if exclude:
        out["exclude"] = list(exclude)
    return out


@cli.command()
def check(data: Path = typer.Argument(..., help="CSV or Parquet transactions."),
          id_col: IdRole = None, timestamp: Role = None, amount: Role = None, customer: Role = None,
          terminal: Role = None, label: Role = None,
          as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON.")):
    """Validate a transaction table and print rows, fraud rate, time span, entities and problems.

    Exits 1 when some rows have problems (they are listed) or the label column cannot train a model
    (one class only), 2 on a table-level error.

    Example: lepton-apps finance check transactions.parquet --label tx_fraud
    """
    from .data import Schema, read_table, summary, validate
    from .features import FeatureSpec

    schema = Schema(**_schema_overrides(id_col, timestamp, amount, customer, terminal, label, None, None))
    df = read_table(data, schema.missing_values)
    v = validate(df, schema, need_label=False)
    info = summary(df, v)
    spec = FeatureSpec(v.roles, [1, 7, 30], 7.0, [c for c in v.user_columns if c not in v.categorical],
                       {c: [] for c in v.categorical})
    info["features_built"], info["features_not_built"] = spec.built_and_missing()
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
    else:
        typer.echo(f"{data}: {info['rows']:,} rows, {info['invalid_rows']:,} with problems")
        typer.echo("roles: " + ", ".join(f"{k}={v or '-'}" for k, v in info["roles"].items()))
        if "fraud_rate" in info:
            typer.echo(f"fraud: {info['fraud_rows']:,} rows ({info['fraud_rate']:.3%})")
        if "time_span" in info:
            ts = info["time_span"]
            typer.echo(f"time span: {ts['start']} .. {ts['end']} ({ts['days']} days)")
        for role in ("customer", "terminal"):
            if f"{role}s" in info:
                typer.echo(f"{role}s: {info[role + 's']:,}")
        typer.echo(f"user columns: {len(info['user_columns'])} ({len(info['categorical'])} categorical)")
        typer.echo("features built: " + "; ".join(info["features_built"]))
        if info["features_not_built"]:
            typer.echo("features not built: " + "; ".join(info["features_not_built"]))
        for kind, n in info["problems"].items():
            typer.echo(f"problem: {kind}: {n:,} rows")
        for row, text in info["first_problem_rows"].items():
            typer.echo(f"  row {row}: {text}")
        for text in info["table_problems"]:
            typer.echo(f"problem: {text}")
    if info["invalid_rows"] or info["table_problems"]:
        raise typer.Exit(1)


@cli.command("demo-data")
def demo_data(out: Path = typer.Argument(..., help="Output .parquet or .csv file."),
              customers: int = typer.Option(1000, help="Number of customers."),
              terminals: int = typer.Option(2000, help="Number of terminals."),
              days: int = typer.Option(60, help="Number of days."),
              seed: int = typer.Option(0, help="Random seed.")):
    """Write simulated card transactions (Fraud Detection Handbook design) with three fraud scenarios.

    Example: lepton-apps finance demo-data transactions.parquet --customers 5000 --terminals 10000 --days 183
    """
    from .demo import write_demo_data

    path = write_demo_data(out, customers, terminals, days, seed)
    typer.echo(f"wrote {path}")


@cli.command()
def train(data: Optional[Path] = typer.Argument(None, help="CSV or Parquet transactions with a label column."),
          config: Optional[Path] = typer.Option(None, help="YAML FraudConfig (flags override it)."),
          out: Optional[Path] = typer.Option(None, help="Bundle folder (default runs/finance-TIMESTAMP)."),
          id_col: IdRole = None, timestamp: Role = None, amount: Role = None, customer: Role = None,
          terminal: Role = None, label: Role = None,
          categorical: Optional[list[str]] = typer.Option(None, help="Categorical user column (repeatable)."),
          exclude: Optional[list[str]] = typer.Option(None, help="Column to ignore (repeatable)."),
          split: Optional[str] = typer.Option(None, help="auto, time, prequential, fraction or stratified."),
          test_days: Optional[float] = typer.Option(None, help="Test period length in days (default 7)."),
          label_delay_days: Optional[float] = typer.Option(None, help="Days until a label is known (default 7)."),
          search_trials: Optional[int] = typer.Option(None, help="optuna trials (0 = no search)."),
          search_timeout: Optional[float] = typer.Option(None, help="Time budget of the search in seconds."),
          alert_budget: Optional[int] = typer.Option(None, help="Alerts per day (k of Card Precision@k)."),
          cost_review: Optional[float] = typer.Option(None, help="Cost of reviewing one alert."),
          skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Leave invalid rows out (counted)."),
          mlp: bool = typer.Option(False, "--mlp", help="Also train a PyTorch MLP; blended in only if it helps "
                                                      "validation AUC-PR."),
          overwrite: bool = typer.Option(False, help="Replace an existing bundle folder."),
          register: Optional[str] = typer.Option(None, help="Also register the bundle under this name.")):
    """Train a LightGBM fraud model with leak-free features; write an evaluated bundle.

    Example: lepton-apps finance train transactions.parquet --out runs/fraud --split prequential
    """
    from .config import FraudConfig
    from .training import train as run_train

    flags = dict(data=str(data) if data is not None else None, out=str(out) if out else None, split=split,
                 test_days=test_days, label_delay_days=label_delay_days, search_trials=search_trials,
                 search_timeout_s=search_timeout, alert_budget=alert_budget, cost_review=cost_review,
                 columns=_schema_overrides(id_col, timestamp, amount, customer, terminal, label, categorical,
                                           exclude) or None,
                 invalid_rows="skip" if skip_invalid else None, mlp=True if mlp else None,
                 overwrite=True if overwrite else None)
    cfg = FraudConfig.from_yaml_and_overrides(config, flags)
    bundle = run_train(cfg, progress=echo_progress)
    report = json.loads((bundle / "report.json").read_text())
    _print_report(report)
    typer.echo(f"bundle: {bundle}")
    if register:
        from lepton_apps.registry import Registry

        entry = Registry().register(bundle, register)
        typer.echo(f"registered {entry.name}")


def _print_report(report: dict) -> None:
    from .evaluate import summary

    typer.echo(f"split: {report['split']['description']}")
    typer.echo(f"device: {report['device']}; imbalance: {report['model_choice']['imbalance']}; "
               f"rounds: {report['rounds']}")
    typer.echo("features built: " + "; ".join(report["features_built"]))
    if report["features_not_built"]:
        typer.echo("features not built: " + "; ".join(report["features_not_built"]))
    typer.echo(f"test: {summary(report['test'])}")
    if report.get("mlp"):
        m = report["mlp"]
        typer.echo(f"MLP: validation AUC-PR {m['val_pr_auc_mlp']:.4f} (LightGBM {m['val_pr_auc_lightgbm']:.4f}, best blend "
                   f"{m['val_pr_auc_blend']:.4f}): {'blended in' if m['used'] else 'not used'}")
    if report.get("prequential"):
        p = report["prequential"]
        typer.echo("prequential: " + "  ".join(f"{k} {p[k]['mean']:.4f} ± {p[k]['std']:.4f}"
                                                for k in ("roc_auc", "pr_auc", "card_precision_at_k")))


def _score(bundle: str, data: Path, out: Path, chunk_size: int, resume: bool, reasons_for: str,
           compiled: str, reasons_method: str = "treeshap") -> None:
    from .predict import FraudScorer

    scorer = FraudScorer.load(bundle, compiled=compiled, reasons_method=reasons_method)
    result = scorer.score_file(data, out, chunk_size=chunk_size, resume=resume, reasons_for=reasons_for)
    typer.echo(f"scored {result.n_rows:,} rows ({result.n_errors:,} with an error) with {scorer.scoring_engine}"
               f" -> {result.output}")


@cli.command()
def score(bundle: str = typer.Argument(..., help="Bundle path, registry name or finance:latest."),
          data: Path = typer.Argument(..., help="CSV or Parquet transactions to score."),
          out: Path = typer.Option(..., "--out", help="Output .parquet or .csv (one row per input row)."),
          chunk_size: int = typer.Option(100_000, help="Rows per chunk."),
          resume: bool = typer.Option(True, help="Reuse finished chunks of an interrupted run."),
          reasons_for: str = typer.Option("alerts", help="Rows that get reasons: alerts, all or none."),
          compiled: str = typer.Option("auto", help="Score with the model compiled to native code (lleaves): "
                                       "auto (when cached, or for 250k+ rows), yes or no. Same scores."),
          reasons_method: str = typer.Option("treeshap", help="How reasons are computed: treeshap (exact Shapley "
                                             "values) or path (path attributions precomputed per leaf: 50x+ faster, "
                                             "TreeSHAP's top reason among its three in 85-99 % of alerts).")):
    """Score a table: score, decision, top reasons and an error column for invalid rows.

    Example: lepton-apps finance score finance:latest transactions.csv --out scores.parquet
    """
    _score(bundle, data, out, chunk_size, resume, reasons_for, compiled, reasons_method)


@cli.command("compile")
def compile_cmd(bundle: str = typer.Argument(..., help="Bundle path, registry name or finance:latest.")):
    """Compile a bundle's model to native code for this machine (cached; makes scoring several times faster).

    Example: lepton-apps finance compile finance:latest
    """
    from .predict import FraudScorer

    scorer = FraudScorer.load(bundle, compiled="yes")
    typer.echo(f"compiled {scorer.booster.num_trees()} trees in {scorer.compiled.compile_seconds:.1f}s "
               f"-> {scorer.compiled.path}")



@cli.command("export")
def export_cmd(bundle: str = typer.Argument(..., help="Bundle path, registry name or finance:latest."),
               out: Path = typer.Option(..., "--out", help="Export folder to write (model.onnx + export.json)."),
               fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
               quantize: Optional[str] = typer.Option(None, help="int8 is not offered for tree models (refused)."),
               data: Optional[Path] = typer.Option(None, help="CSV or Parquet transactions to check the export on "
                                                   "(default: the bundle's validation split when its training data "
                                                   "is at hand, else a documented synthetic sample)."),
               overwrite: bool = typer.Option(False, help="Replace an existing export folder.")):
    """Export the LightGBM model to ONNX (onnxmltools) with its feature list, checked against LightGBM.

    Example: lepton-apps finance export finance:latest --format onnx --out exports/fraud-onnx
    """
    from lepton_apps.errors import ConfigError
    from lepton_apps.export import load_export

    from .export import export

    if fmt != "onnx":
        raise ConfigError(f"unknown export format {fmt!r}", where="--format", fix="use --format onnx")
    path = export(bundle, out, quantize=quantize, data=data, overwrite=overwrite)
    check = load_export(path).card["check"]
    typer.echo(f"exported {path} (fp32 ONNX): max abs difference to LightGBM {check['max_abs_diff']:.2g} "
               f"(tolerance {check['tolerance']:.0e}) on {check['data']}")
