"""``lepton-apps support …``: train, evaluate, answer, check, demo-data."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

cli = typer.Typer(help="Customer-service QA: FAQ retrieval with a Transformer encoder, confidence and hand-off.",
                  no_args_is_help=True)


@cli.command("demo-data")
def demo_data(out: Path = typer.Argument(Path("demo_data/support"), help="Folder to write the demo files to.")):
    """Write the Nimbus Bank demo KB, held-out questions and labelled sentiment messages.

    Example: lepton-apps support demo-data demo_data/support
    """
    from .demo import write_demo_data

    for key, path in write_demo_data(out).items():
        typer.echo(f"{key:<14} {path}")


@cli.command()
def train(kb: Optional[Path] = typer.Argument(None, help="FAQ knowledge base (CSV / JSON / JSONL: id, question, answer)."),
          config: Optional[Path] = typer.Option(None, help="YAML SupportConfig (keys: see 'SupportConfig'); CLI flags override it."),
          out: Optional[Path] = typer.Option(None, help="Bundle folder to write."),
          questions: Optional[Path] = typer.Option(None, help="Held-out questions (question, faq_id, split=val/test)."),
          intent_data: Optional[Path] = typer.Option(None, help="CSV/JSON text,intent for the intent classifier."),
          sentiment_data: Optional[Path] = typer.Option(None, help="CSV/JSON text,label for escalation."),
          encoder: Optional[str] = typer.Option(None, help="Encoder: all-MiniLM-L6-v2, a local folder or a cached HF id."),
          finetune: bool = typer.Option(False, "--finetune", help="Fine-tune the bi-encoder on the KB's paraphrase pairs."),
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
    overrides["finetune_encoder"] = True if finetune else None
    cfg = SupportConfig.from_yaml_and_overrides(config, overrides)

    def progress(stage: str, fraction: float) -> None:
        typer.echo(f"[{fraction:>4.0%}] {stage}")

    path = run_train(cfg, progress=progress)
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
           resume: bool = typer.Option(True, help="Reuse finished chunks of an interrupted run.")):
    """Answer one question (-q) or a whole table, one output row per input row, resumable.

    Example: lepton-apps support answer support:latest questions.csv --out answers.parquet
    """
    import json

    from lepton_apps.errors import ConfigError

    from .predict import SupportAssistant

    if question is None and questions is None:
        raise ConfigError("nothing to answer", fix="pass a questions file and --out, or --question 'text'")
    bot = SupportAssistant.load(bundle)
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
