"""What every domain's CLI prints while it works: :func:`echo_progress` is the ``progress`` callback a build takes
(``progress(stage, fraction)``), printed as ``[ 40%] calibrating retrieval and hand-off``."""
from __future__ import annotations

import typer


def echo_progress(stage: str, fraction: float) -> None:
    """Print a build's progress: ``[ 40%] calibrating retrieval and hand-off``."""
    typer.echo(f"[{fraction:>4.0%}] {stage}")
