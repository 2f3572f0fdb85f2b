"""``lepton-apps support …``: train, evaluate, answer, check, demo-data, review (the support loop)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lepton_apps.console import echo_progress

cli = typer.Typer(help="Customer-service QA: FAQ retrieval with a Transformer encoder, confidence and hand-off.",
                  no_args_is_help=True)


@cli.command("demo-data")
def demo_data(out: Path = typer.Argument(Path("demo_data/support"), help="Folder to write the demo files to."),
              lang: str = typer.Option("en", help="Language of the demo: en (English) or zh (Chinese).")):
    """Write the Nimbus Bank demo KB, held-out questions and labelled sentiment messages.

    Example: lepton-apps support demo-data demo_data/support --lang zh
    """
    from .demo import write_demo_data

    for key, path in write_demo_data(out, lang).items():
        typer.echo(f"{key:<14} {path}")


@cli.command()
def train(kb: Optional[Path] = typer.Argument(None, help="FAQ knowledge base (CSV / JSON / JSONL: id, question, answer)."),
          config: Optional[Path] = typer.Option(None, help="YAML SupportConfig (keys: see 'SupportConfig'); CLI flags override it."),
          out: Optional[Path] = typer.Option(None, help="Bundle folder to write."),
          questions: Optional[Path] = typer.Option(None, help="Held-out questions (question, faq_id, split=val/test)."),
          intent_data: Optional[Path] = typer.Option(None, help="CSV/JSON text,intent for the intent classifier."),
          sentiment_data: Optional[Path] = typer.Option(None, help="CSV/JSON text,label for escalation."),
          encoder: Optional[str] = typer.Option(None, help="Encoder: auto (by the KB's language; default), all-MiniLM-L6-v2, "
                                                            "multilingual, a local folder or a cached HF id."),
          finetune: bool = typer.Option(False, "--finetune", help="Fine-tune the bi-encoder on the KB's paraphrase pairs "
                                                                 "(the default for MiniLM; this forces it for any encoder)."),
          fast: bool = typer.Option(False, "--fast", help="Build without bi-encoder fine-tuning or the second stage "
                                                          "(10-15x faster on a CPU; a little less accurate, see the README)."),
          reranker: bool = typer.Option(False, "--reranker", help="Train the second stage: a cross-encoder that re-scores "
                                                                 "the top FAQs (minutes on a CPU; see the README)."),
          intent_backbone: Optional[str] = typer.Option(None, help="frozen (head on embeddings, fast) or finetune "
                                                                   "(AutoModelForSequenceClassification; needs --intent-data)."),
          register: Optional[str] = typer.Option(None, help="Also register the bundle under this name.")):
    """Encode the KB, calibrate confidence and hand-off, train intent/sentiment heads, evaluate, write a bundle.

    Example: lepton-apps support train demo_data/support/demo_kb.json --questions demo_data/support/demo_questions.json --out runs/support
    """
    from .config import SupportConfig
    from .training import train as run_train

    flags = {"kb": kb, "out": out, "questions": questions, "intent_data": intent_data,
             "sentiment_data": sentiment_data, "encoder": encoder, "intent_backbone": intent_backbone}
    overrides = {k: str(v) if v is not None else None for k, v in flags.items()}
    if fast and (finetune or reranker):
        from lepton_apps.errors import ConfigError

        raise ConfigError("--fast builds without fine-tuning and without the second stage", where="--fast",
                          fix="drop --fast, or drop --finetune / --reranker")
    overrides["finetune_encoder"] = "on" if finetune else "off" if fast else None
    overrides["reranker"] = "on" if reranker else "off" if fast else None
    cfg = SupportConfig.from_yaml_and_overrides(config, overrides)

    path = run_train(cfg, progress=echo_progress)
    from lepton_apps.bundle import load_bundle

    metrics = load_bundle(path).metrics
    shown = {k: v for k, v in metrics.items() if isinstance(v, float)}
    typer.echo(f"bundle: {path}")
    typer.echo("  ".join(f"{k}={v:.3f}" for k, v in shown.items()))
    if register:
        from lepton_apps.registry import Registry

        typer.echo(f"registered {Registry().register(path, register).name}")


@cli.command()
def answer(bundle: str = typer.Argument(..., help="Bundle folder, registry name or support:latest."),
           questions: Optional[Path] = typer.Argument(None, help="CSV / Parquet with a 'question' column (batch mode)."),
           out: Optional[Path] = typer.Option(None, help="Output table (.parquet or .csv) for batch mode."),
           question: Optional[str] = typer.Option(None, "--question", "-q", help="Answer one question and print JSON."),
           id_column: Optional[str] = typer.Option(None, help="Column with row ids (default: row number)."),
           chunk_size: int = typer.Option(1000, help="Rows per chunk (each chunk is saved, so a re-run resumes)."),
           resume: bool = typer.Option(True, help="Reuse finished chunks of an interrupted run."),
           backend: str = typer.Option("auto", help="How questions are encoded: torch, onnx (fp32 ONNX Runtime), "
                                       "int8 (only where it passed the retrieval gate; else fp32 with a warning) or "
                                       "auto (onnx on a CPU with onnxruntime, else torch)."),
           export: Optional[Path] = typer.Option(None, help="An export folder of this bundle (lepton-apps support "
                                                 "export) to encode with.")):
    """Answer one question (-q) or a whole table, one output row per input row, resumable.

    Example: lepton-apps support answer support:latest questions.csv --out answers.parquet
    """
    import json

    from lepton_apps.errors import ConfigError

    from .predict import SupportAssistant

    if question is None and questions is None:
        raise ConfigError("nothing to answer", fix="pass a questions file and --out, or --question 'text'")
    from lepton_apps.cli import load_and_warn

    bot = load_and_warn(lambda: SupportAssistant.load(bundle, backend=backend, export=export))
    if question is not None:
        typer.echo(json.dumps(bot.answer(question).to_dict(), indent=2, ensure_ascii=False))
        return
    if out is None:
        raise ConfigError("batch mode needs --out", fix="add --out answers.parquet")
    from lepton_apps.batch import run_batch

    result = run_batch(questions, out, bot.answer_frame, id_column=id_column, chunk_size=chunk_size, resume=resume)
    typer.echo(f"wrote {result.output} ({result.n_rows} rows, {result.n_errors} error rows, "
               f"{result.resumed_chunks} chunks resumed)")





@cli.command()
def check(kb: Path = typer.Argument(..., help="Knowledge base file to validate."),
          questions: Optional[Path] = typer.Option(None, help="Held-out questions to validate against the KB.")):
    """Validate a knowledge base (and questions) without training: columns, empty answers, duplicate ids, encoding.

    Example: lepton-apps support check faq.csv --questions heldout.csv
    """
    from .data import read_kb, read_questions

    table = read_kb(kb)
    n_para = int(table["paraphrases"].map(len).sum())
    typer.echo(f"OK: {len(table)} FAQ entries, {n_para} paraphrases, "
               f"{table['category'].replace('', None).nunique()} categories")
    few = table[table["paraphrases"].map(len) == 0]
    if len(few):
        typer.echo(f"note: {len(few)} entries have no paraphrases (retrieval and calibration work better with 2+)")
    if questions:
        q = read_questions(questions, kb_ids=set(table["id"]))
        typer.echo(f"OK: {len(q)} questions, {(q['faq_id'] == '').sum()} out of scope")


review_cli = typer.Typer(help="The support loop: candidate paraphrases from thumbs-down ratings and agents' resolutions, "
                              "reviewed, then applied as a rebuilt bundle.", no_args_is_help=True)
cli.add_typer(review_cli, name="review")


def _review_store(db: Optional[str]):
    from lepton_apps.store import Store

    return Store.open(db)


_DB_HELP = "Database URL (default $LEPTON_DB_URL, else lepton.db in $LEPTON_HOME)."


@review_cli.command("collect")
def review_collect(bundle: str = typer.Argument(..., help="The support model whose KB the candidates are for "
                                                          "(registry name, support:latest or a folder)."),
                   db: Optional[str] = typer.Option(None, help=_DB_HELP)):
    """Turn thumbs-down ratings and outcomes resolved with a KB FAQ into pending candidates (each source once).

    Example: lepton-apps support review collect support:latest
    """
    from .predict import SupportAssistant
    from .review import collect_candidates

    counts = collect_candidates(_review_store(db), SupportAssistant.load(bundle))
    typer.echo("  ".join(f"{k}={v}" for k, v in counts.items()))


@review_cli.command("list")
def review_list(status: Optional[str] = typer.Option("pending", help="pending, accepted, rejected, applied or all."),
                db: Optional[str] = typer.Option(None, help=_DB_HELP)):
    """Print the candidates (id, status, proposed and decided FAQ, source, question).

    Example: lepton-apps support review list --status all
    """
    frame = _review_store(db).candidates_frame(None if status == "all" else status)
    if frame.empty:
        typer.echo(f"no {'' if status == 'all' else status + ' '}candidates")
        return
    for r in frame.itertuples(index=False):
        typer.echo(f"{r.id:>5}  {r.status:<9} {r.proposed_faq_id or '-':<20} -> {r.faq_id or '-':<20} "
                   f"{r.source:<16} {r.question[:80]!r}")


def _decide(candidate_id: int, decision: str, by: Optional[str], faq: Optional[str], db: Optional[str]) -> None:
    from .review import reviewer

    row = _review_store(db).decide_candidate(candidate_id, decision, by or reviewer(), faq_id=faq)
    typer.echo(f"candidate {row['id']}: {row['status']} -> {row['faq_id'] or '-'} by {row['decided_by']}")


@review_cli.command("accept")
def review_accept(candidate_id: int = typer.Argument(..., help="Candidate id (see 'review list')."),
                  by: Optional[str] = typer.Option(None, help="Reviewer (default: the OS user)."),
                  db: Optional[str] = typer.Option(None, help=_DB_HELP)):
    """Accept a candidate for its proposed FAQ.

    Example: lepton-apps support review accept 3
    """
    _decide(candidate_id, "accept", by, None, db)


@review_cli.command("assign")
def review_assign(candidate_id: int = typer.Argument(..., help="Candidate id (see 'review list')."),
                  faq: str = typer.Argument(..., help="The KB FAQ id that answers the question."),
                  by: Optional[str] = typer.Option(None, help="Reviewer (default: the OS user)."),
                  db: Optional[str] = typer.Option(None, help=_DB_HELP)):
    """Accept a candidate for another FAQ than the proposed one.

    Example: lepton-apps support review assign 3 card-replacement
    """
    _decide(candidate_id, "assign", by, faq, db)


@review_cli.command("reject")
def review_reject(candidate_id: int = typer.Argument(..., help="Candidate id (see 'review list')."),
                  by: Optional[str] = typer.Option(None, help="Reviewer (default: the OS user)."),
                  db: Optional[str] = typer.Option(None, help=_DB_HELP)):
    """Reject a candidate (it is never proposed again from the same source).

    Example: lepton-apps support review reject 4
    """
    _decide(candidate_id, "reject", by, None, db)


@review_cli.command("apply")
def review_apply(bundle: str = typer.Argument(..., help="The support model to rebuild (registry name or support:latest)."),
                 name: Optional[str] = typer.Option(None, help="Registry name to version (needed for a folder outside "
                                                               "the registry)."),
                 questions: Optional[Path] = typer.Option(None, help="The held-out questions, when the training file moved."),
                 sentiment_data: Optional[Path] = typer.Option(None, help="The sentiment data, when the training file moved."),
                 intent_data: Optional[Path] = typer.Option(None, help="The intent data, when the training file moved."),
                 db: Optional[str] = typer.Option(None, help=_DB_HELP)):
    """Rebuild the bundle with the accepted paraphrases (same settings), register it as NAME.vN, and print the
    answered-correct of the old and the new bundle on the held-out questions.

    Example: lepton-apps support review apply support-demo
    """
    from .review import apply_accepted

    applied = apply_accepted(bundle, _review_store(db), name=name, questions=str(questions) if questions else None,
                             sentiment_data=str(sentiment_data) if sentiment_data else None,
                             intent_data=str(intent_data) if intent_data else None, progress=echo_progress)
    typer.echo(applied.summary())
    typer.echo(f"bundle: {applied.path}\nlive answered accuracy per model version: lepton-apps monitor live support; "
               f"promote it with: lepton-apps models promote {applied.name}")


@cli.command("export")
def export_cmd(bundle: str = typer.Argument(..., help="Bundle path, registry name or support:latest."),
               out: Path = typer.Option(..., "--out", help="Export folder to write (model.onnx, tokenizer/, heads/, "
                                                          "export.json)."),
               fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
               quantize: Optional[str] = typer.Option(None, help="int8: dynamic int8 encoder, written only if it passes "
                                                      "the retrieval gate."),
               max_top1_drop: float = typer.Option(0.005, help="int8 gate: most retrieval top-1 the int8 encoder may "
                                                   "lose against fp32 (0.005 = half a point)."),
               max_handoff_recall_drop: float = typer.Option(0.01, help="int8 gate: most hand-off recall the int8 "
                                                             "encoder may lose against fp32."),
               int8_method: str = typer.Option("dynamic", help="int8: dynamic (activations quantised at run time; "
                                               "the default: 1.4x fp32 here) or static (ranges calibrated on KB texts; 0.65x fp32 on an AVX2 CPU)."),
               overwrite: bool = typer.Option(False, help="Replace an existing export folder.")):
    """Export the sentence encoder (pooling and normalisation inside the graph, tokenizer alongside) and the
    intent / sentiment / FAQ heads to ONNX, checked against PyTorch on the KB texts; with --quantize int8,
    dynamic int8 behind a retrieval gate (refused with the numbers when it misses).

    Example: lepton-apps support export support:latest --format onnx --quantize int8 --out exports/support-int8
    """
    from lepton_apps.errors import ConfigError
    from lepton_apps.export import load_export

    from .export import export

    if fmt != "onnx":
        raise ConfigError(f"unknown export format {fmt!r}", where="--format", fix="use --format onnx")
    path = export(bundle, out, quantize=quantize, max_top1_drop=max_top1_drop,
                  max_handoff_recall_drop=max_handoff_recall_drop, int8_method=int8_method, overwrite=overwrite)
    card = load_export(path).card
    check = card["check"]
    heads = card.get("heads") or {}
    typer.echo(f"exported {path} ({card['precision']} ONNX): max abs difference to PyTorch {check['max_abs_diff']:.2g} "
               f"in embeddings on {check['data']}")
    if heads:
        worst = max(card["heads_check"]["max_abs_diff_per_head"].values())
        typer.echo(f"  heads: {', '.join(heads)} (probabilities within {worst:.2g} of PyTorch)")
    for what in card.get("not_exported") or []:
        typer.echo(f"  not exported: {what}")
    gate = card.get("gate")
    if gate:
        typer.echo(f"int8 gate passed: top-1 {gate['int8']['top1']:.4f} vs fp32 {gate['fp32']['top1']:.4f} (drop "
                   f"{gate['top1_drop']:.4f}, allowed {gate['max_top1_drop']:.4f}); hand-off recall "
                   f"{gate['int8']['handoff_recall']:.4f} vs {gate['fp32']['handoff_recall']:.4f} (drop "
                   f"{gate['handoff_recall_drop']:.4f}, allowed {gate['max_handoff_recall_drop']:.4f}) on {gate['data']}")
        typer.echo(f"  cosine to fp32 mean {gate['cosine_to_fp32']['mean']:.4f}, min {gate['cosine_to_fp32']['min']:.4f}")
