"""A batch job run in a subprocess by tests/test_batch.py (so that it can be killed with -9).

Usage: python helpers_batch_worker.py SOURCE OUTPUT CHUNK_SIZE CALLS_FILE SLEEP_S [ID_COLUMN]

Prints the BatchResult as one JSON line on stdout when the job finishes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import pandas as pd


def make_score_fn(calls_file: str, sleep_s: float):
    """score = 3 * x + 1; each call appends the chunk's first row number to ``calls_file``."""

    def score(chunk: pd.DataFrame) -> pd.DataFrame:
        with open(calls_file, "a") as fh:
            fh.write(f"{chunk.index[0]}\n")
            fh.flush()
            os.fsync(fh.fileno())
        time.sleep(sleep_s)
        return pd.DataFrame({"score": chunk["x"] * 3 + 1, "label": chunk["x"].map(lambda v: f"x{v}")})

    return score


def main(argv: list[str]) -> int:
    from lepton_apps.batch import run_batch

    source, output, chunk_size, calls_file, sleep_s = argv[:5]
    id_column = argv[5] if len(argv) > 5 else None
    result = run_batch(source, output, make_score_fn(calls_file, float(sleep_s)),
                       id_column=id_column, chunk_size=int(chunk_size), progress=False)
    print(json.dumps(dataclasses.asdict(result), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
