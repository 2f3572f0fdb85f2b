"""Tests for lepton_apps.batch: one row per input row, error rows, atomic + resumable runs."""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lepton_apps.batch import BatchResult, ScoreFunctionError, run_batch, score_chunk
from lepton_apps.errors import ConfigError, DataError, DependencyError

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("helpers_batch_worker.py")
HAS_RAY = importlib.util.find_spec("ray") is not None


def double_x(chunk: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"score": chunk["x"] * 2})


class Interrupt(BaseException):
    """Stands in for Ctrl-C / a crash: not an Exception, so it is not turned into error rows."""


def read_output(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


# --------------------------------------------------------------------------- row count + order


def test_csv_keeps_every_row_in_order_and_ids_as_written(tmp_path):
    ids = [f"{i:05d}" for i in range(53)]  # leading zeros must survive
    amount = [float(i) if i % 11 else None for i in range(53)]  # blanks only in some chunks
    src = tmp_path / "tx.csv"
    pd.DataFrame({"txn_id": ids, "x": amount}).to_csv(src, index=False)

    res = run_batch(src, tmp_path / "out.parquet", double_x, id_column="txn_id", chunk_size=7,
                    progress=False)

    out = pd.read_parquet(res.output)
    assert list(out.columns) == ["txn_id", "score", "error"]
    assert out["txn_id"].tolist() == ids
    expected = [a * 2 if a is not None else None for a in amount]
    assert [None if np.isnan(v) else v for v in out["score"]] == expected
    assert out["error"].isna().all()
    assert (res.n_rows, res.n_errors, res.n_chunks, res.resumed_chunks) == (53, 0, 8, 0)
    assert not (tmp_path / "out.parquet.parts").exists()


def test_csv_integer_ids_stay_integers_across_chunks(tmp_path):
    src = tmp_path / "tx.csv"
    # the id column has a blank in the last chunk: per-chunk inference would make it float there
    src.write_text("id,x\n" + "".join(f"{i * 10},{i}\n" for i in range(20)) + ",99\n")
    out = tmp_path / "out.parquet"
    run_batch(src, out, double_x, id_column="id", chunk_size=6, progress=False)
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.int64()
    assert table.column("id").to_pylist() == [i * 10 for i in range(20)] + [None]
    assert table.column("score").to_pylist()[-1] == 198


def test_parquet_across_row_groups_keeps_order_and_id_type(tmp_path):
    n = 47
    src = tmp_path / "tx.parquet"
    pq.write_table(pa.table({"key": pa.array(np.arange(n) * 3, pa.int32()), "x": np.arange(n)}),
                   src, row_group_size=10)

    res = run_batch(src, tmp_path / "out.csv", double_x, id_column="key", chunk_size=9,
                    progress=False)

    table = pq.read_table(src)
    out = pd.read_csv(res.output)
    assert list(out.columns) == ["key", "score", "error"]
    assert out["key"].tolist() == table.column("key").to_pylist()
    assert out["score"].tolist() == [2 * i for i in range(n)]
    assert res.n_rows == n and res.n_chunks == 6  # ceil(47 / 9)


def test_dataframe_uses_row_numbers_and_realigns_reordered_results(tmp_path):
    df = pd.DataFrame({"x": np.arange(25)}, index=np.arange(25)[::-1] * 100)  # a misleading index

    def reversed_output(chunk):  # same rows, other order, keyed by index
        return pd.DataFrame({"score": chunk["x"] * 2}, index=chunk.index)[::-1]

    def fresh_index(chunk):  # same order, new RangeIndex
        return pd.DataFrame({"score": (chunk["x"] * 2).to_numpy()})

    for fn in (reversed_output, fresh_index):
        out_path = tmp_path / f"{fn.__name__}.parquet"
        run_batch(df, out_path, fn, chunk_size=4, progress=False)
        out = pd.read_parquet(out_path)
        assert out["row_id"].tolist() == list(range(25))
        assert out["score"].tolist() == [2 * i for i in range(25)]


def test_folder_is_recursive_sorted_filtered_and_keeps_paths(tmp_path):
    root = tmp_path / "images"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    names = ["a/1.txt", "a/2.txt", "b/3.txt", "c.txt", "z.txt"]
    for i, name in enumerate(names):
        (root / name).write_text(str(i))
    (root / "b" / "notes.md").write_text("skip me")
    (root / ".hidden.txt").write_text("skip me")
    (root / "bad.txt").write_text("not a number")

    def read_number(chunk):
        return pd.DataFrame({"value": [int(Path(p).read_text()) for p in chunk["path"]]})

    res = run_batch(root, tmp_path / "out.parquet", read_number, chunk_size=4,
                    file_glob=("*.txt",), progress=False)

    out = pd.read_parquet(res.output)
    expected = ["a/1.txt", "a/2.txt", "b/3.txt", "bad.txt", "c.txt", "z.txt"]
    assert list(out.columns) == ["row_id", "path", "value", "error"]
    assert [Path(p).relative_to(root).as_posix() for p in out["path"]] == expected
    assert out["row_id"].tolist() == list(range(6))
    bad = out[out["path"].str.endswith("bad.txt")].iloc[0]
    assert "ValueError" in bad["error"] and np.isnan(bad["value"])
    ok = out.drop(index=bad.name)
    assert ok["value"].tolist() == [0, 1, 2, 3, 4] and ok["error"].isna().all()


def test_output_inside_the_input_folder_is_not_read_back_as_input(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.txt").write_text(str(i))

    def size(chunk):
        return pd.DataFrame({"bytes": [Path(p).stat().st_size for p in chunk["path"]]})

    with pytest.raises(Interrupt):  # leaves tmp_path/scores.csv.parts/ behind
        run_batch(tmp_path, tmp_path / "scores.csv", _interrupt_after(1, []), chunk_size=2,
                  progress=False)
    for _ in range(2):  # the second run also finds scores.csv itself in the folder
        res = run_batch(tmp_path, tmp_path / "scores.csv", size, chunk_size=2, progress=False)
        assert res.n_rows == 3 and res.n_errors == 0
        assert [Path(p).name for p in pd.read_csv(res.output)["path"]] == ["0.txt", "1.txt", "2.txt"]


def test_file_list_with_a_missing_file_gives_an_error_row(tmp_path):
    files = []
    for i in range(5):
        files.append(tmp_path / f"f{i}.txt")
        files[-1].write_text(str(i * 7))
    files.insert(2, tmp_path / "gone.txt")

    def read_number(chunk):
        return pd.DataFrame({"value": [int(Path(p).read_text()) for p in chunk["path"]]})

    res = run_batch(files, tmp_path / "out.parquet", read_number, chunk_size=4, progress=False)
    out = pd.read_parquet(res.output)
    assert [Path(p).name for p in out["path"]] == [f.name for f in files]
    assert res.n_errors == 1 and "FileNotFoundError" in out["error"][2]
    assert out["value"].drop(index=2).tolist() == [0, 7, 14, 21, 28]


# --------------------------------------------------------------------------- error rows


def test_failing_rows_are_isolated_and_good_rows_in_the_chunk_are_scored(tmp_path):
    df = pd.DataFrame({"x": np.arange(40)})
    calls = []

    def fussy(chunk):
        calls.append(len(chunk))
        if (chunk["x"] % 13 == 5).any():
            raise ValueError(f"cannot score x={chunk['x'][chunk['x'] % 13 == 5].tolist()}")
        return double_x(chunk)

    res = run_batch(df, tmp_path / "out.parquet", fussy, chunk_size=16, progress=False)

    out = pd.read_parquet(res.output)
    bad = {5, 18, 31}
    assert out["row_id"].tolist() == list(range(40))
    assert set(out.index[out["error"].notna()]) == bad
    for i in bad:
        assert out["error"][i] == f"ValueError: cannot score x=[{i}]"
        assert np.isnan(out["score"][i])
    assert out["score"].drop(index=list(bad)).tolist() == [2 * i for i in range(40) if i not in bad]
    assert res.n_errors == 3
    # halving, not one call per row: far fewer calls than rows
    assert len(calls) < 40 and 1 in calls


def test_score_fn_can_flag_rows_itself(tmp_path):
    def flags_negatives(chunk):
        return pd.DataFrame({
            "score": chunk["x"].clip(lower=0) ** 0.5,
            "error": ["negative amount" if v < 0 else None for v in chunk["x"]],
        })

    df = pd.DataFrame({"x": [4, -1, 9, -2, 16]})
    res = run_batch(df, tmp_path / "out.csv", flags_negatives, chunk_size=2, progress=False)
    out = pd.read_csv(res.output)
    assert out["error"].tolist()[1] == "negative amount" and out["error"].notna().sum() == 2
    assert out["score"].tolist()[::2] == [2.0, 3.0, 4.0]
    assert res.n_errors == 2


def test_a_chunk_where_every_row_fails_still_gives_one_typed_schema(tmp_path):
    df = pd.DataFrame({"x": np.arange(12)})

    def fails_in_middle_chunk(chunk):
        if chunk["x"].between(4, 7).any():
            raise RuntimeError("model unavailable")
        labels = [None] * len(chunk) if chunk["x"].iloc[0] == 0 else [f"L{v}" for v in chunk["x"]]
        return pd.DataFrame({"score": chunk["x"].astype("int64") * 2, "label": labels})

    res = run_batch(df, tmp_path / "out.parquet", fails_in_middle_chunk, chunk_size=4,
                    progress=False)

    table = pq.read_table(res.output)
    assert table.column_names == ["row_id", "score", "label", "error"]
    assert pa.types.is_integer(table.schema.field("score").type)  # int survives a null chunk
    assert pa.types.is_string(table.schema.field("label").type) or pa.types.is_large_string(
        table.schema.field("label").type)
    assert table.schema.field("error").type == pa.string()
    assert table.column("score").to_pylist() == [0, 2, 4, 6, None, None, None, None, 16, 18, 20, 22]
    assert table.column("label").to_pylist()[8:] == ["L8", "L9", "L10", "L11"]
    assert table.column("error").to_pylist()[4:8] == ["RuntimeError: model unavailable"] * 4
    assert res.n_errors == 4


def test_wrong_row_count_is_a_bug_named_after_the_function(tmp_path):
    def drops_rows(chunk):
        return double_x(chunk).iloc[1:]

    out = tmp_path / "out.parquet"
    with pytest.raises(ScoreFunctionError, match=r"drops_rows returned 4 rows for a chunk of 5 rows"):
        run_batch(pd.DataFrame({"x": range(12)}), out, drops_rows, chunk_size=5, progress=False)
    assert not out.exists()


def test_duplicate_ids_are_kept_and_counted(tmp_path):
    df = pd.DataFrame({"id": ["a", "b", "a", "c", "b", "a"], "x": range(6)})
    res = run_batch(df, tmp_path / "out.parquet", double_x, id_column="id", chunk_size=4,
                    progress=False)
    out = pd.read_parquet(res.output)
    assert out["id"].tolist() == ["a", "b", "a", "c", "b", "a"]
    assert out["score"].tolist() == [0, 2, 4, 6, 8, 10]
    assert res.n_rows == 6 and res.n_duplicate_ids == 3


# --------------------------------------------------------------------------- crash safety


def _worker(args, env=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_then_resume_scores_only_the_missing_chunks(tmp_path):
    n, chunk = 40, 5  # 8 chunks
    src = tmp_path / "tx.parquet"
    pq.write_table(pa.table({"key": [f"k{i}" for i in range(n)], "x": np.arange(n)}), src)
    out = tmp_path / "scores.parquet"
    parts_dir = tmp_path / "scores.parquet.parts"

    first = _worker([src, out, chunk, tmp_path / "calls1.txt", 0.4, "key"])
    deadline = time.monotonic() + 20
    while len(list(parts_dir.glob("part-*.parquet"))) < 2:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "worker wrote no parts"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL

    assert not out.exists()
    assert not list(tmp_path.glob(".scores.parquet.*"))  # no half-written final file either
    done = len(list(parts_dir.glob("part-*.parquet")))
    assert 2 <= done < 8

    second = _worker([src, out, chunk, tmp_path / "calls2.txt", 0, "key"])
    stdout, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr
    result = json.loads(stdout.strip().splitlines()[-1])
    calls = (tmp_path / "calls2.txt").read_text().split()
    assert len(calls) == 8 - done
    assert sorted(int(c) for c in calls) == [i * chunk for i in range(done, 8)]
    assert result["resumed_chunks"] == done and result["n_rows"] == n
    assert not parts_dir.exists()

    sys.path.insert(0, str(WORKER.parent))
    try:
        from helpers_batch_worker import make_score_fn
    finally:
        sys.path.remove(str(WORKER.parent))
    ref = tmp_path / "reference.parquet"
    run_batch(src, ref, make_score_fn(str(tmp_path / "calls_ref.txt"), 0), id_column="key",
              chunk_size=chunk, progress=False)
    assert pq.read_table(out).equals(pq.read_table(ref))
    assert pd.read_parquet(out)["key"].tolist() == [f"k{i}" for i in range(n)]


def _interrupt_after(n_calls, log):
    def score(chunk):
        if len(log) >= n_calls:
            raise Interrupt()
        log.append(int(chunk.index[0]))
        return double_x(chunk)
    return score


def test_resume_in_process_reuses_parts_of_the_same_job(tmp_path):
    df = pd.DataFrame({"x": np.arange(30)})
    out = tmp_path / "out.parquet"
    calls: list[int] = []
    with pytest.raises(Interrupt):
        run_batch(df, out, _interrupt_after(3, calls), chunk_size=7, progress=False)
    assert not out.exists() and len(list((tmp_path / "out.parquet.parts").glob("part-*"))) == 3

    calls2: list[int] = []
    res = run_batch(df, out, _interrupt_after(99, calls2), chunk_size=7, progress=False)
    assert calls2 == [21, 28]
    assert res.resumed_chunks == 3 and res.n_chunks == 5 and res.restarted_because is None
    assert pd.read_parquet(out)["score"].tolist() == [2 * i for i in range(30)]


def test_changed_input_discards_stale_parts_and_says_so(tmp_path, caplog):
    src = tmp_path / "tx.csv"
    pd.DataFrame({"x": range(20)}).to_csv(src, index=False)
    out = tmp_path / "out.parquet"
    with pytest.raises(Interrupt):
        run_batch(src, out, _interrupt_after(2, []), chunk_size=5, progress=False)

    pd.DataFrame({"x": range(100, 121)}).to_csv(src, index=False)  # new content, size and mtime
    calls: list[int] = []
    with caplog.at_level(logging.WARNING, logger="lepton_apps.batch"):
        res = run_batch(src, out, _interrupt_after(99, calls), chunk_size=5, progress=False)

    assert calls == [0, 5, 10, 15, 20]  # every chunk scored again, none reused
    assert res.resumed_chunks == 0 and "source" in res.restarted_because
    assert any("starting over" in r.getMessage() for r in caplog.records)
    assert pd.read_parquet(out)["score"].tolist() == [2 * v for v in range(100, 121)]


def test_other_chunk_size_or_resume_false_never_reuses_parts(tmp_path):
    df = pd.DataFrame({"x": np.arange(20)})
    out = tmp_path / "out.parquet"
    with pytest.raises(Interrupt):
        run_batch(df, out, _interrupt_after(2, []), chunk_size=5, progress=False)
    calls: list[int] = []
    res = run_batch(df, out, _interrupt_after(99, calls), chunk_size=4, progress=False)
    assert calls == [0, 4, 8, 12, 16] and "chunk_size" in res.restarted_because

    with pytest.raises(Interrupt):
        run_batch(df, out, _interrupt_after(2, []), chunk_size=5, progress=False)
    calls = []
    res = run_batch(df, out, _interrupt_after(99, calls), chunk_size=5, resume=False, progress=False)
    assert calls == [0, 5, 10, 15] and res.resumed_chunks == 0


def test_a_corrupt_part_is_scored_again(tmp_path):
    df = pd.DataFrame({"x": np.arange(15)})
    out = tmp_path / "out.parquet"
    with pytest.raises(Interrupt):
        run_batch(df, out, _interrupt_after(2, []), chunk_size=5, progress=False)
    (tmp_path / "out.parquet.parts" / "part-000001.parquet").write_bytes(b"PAR1 truncated")
    calls: list[int] = []
    res = run_batch(df, out, _interrupt_after(99, calls), chunk_size=5, progress=False)
    assert calls == [5, 10] and res.resumed_chunks == 1
    assert pd.read_parquet(out)["score"].tolist() == [2 * i for i in range(15)]


# --------------------------------------------------------------------------- bad input / config


def test_missing_input_says_where_and_what_is_accepted(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError) as err:
        run_batch(missing, tmp_path / "o.parquet", double_x, progress=False)
    assert str(missing) in str(err.value) and ".parquet" in str(err.value) and "folder" in str(err.value)


def test_unknown_input_suffix_and_output_suffix(tmp_path):
    src = tmp_path / "data.xlsx"
    src.write_bytes(b"x")
    with pytest.raises(DataError, match=r"unsupported input file type '\.xlsx'"):
        run_batch(src, tmp_path / "o.parquet", double_x, progress=False)
    with pytest.raises(ConfigError, match=r"\.parquet or \.csv"):
        run_batch(pd.DataFrame({"x": [1]}), tmp_path / "o.json", double_x, progress=False)
    with pytest.raises(ConfigError, match="engine"):
        run_batch(pd.DataFrame({"x": [1]}), tmp_path / "o.csv", double_x, engine="spark")


def test_missing_id_column_and_broken_files(tmp_path):
    src = tmp_path / "tx.csv"
    src.write_text("a,x\n1,2\n")
    with pytest.raises(DataError, match="id column 'txn_id' is not in the input"):
        run_batch(src, tmp_path / "o.parquet", double_x, id_column="txn_id", progress=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        run_batch(empty, tmp_path / "o.parquet", double_x, progress=False)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot read Parquet"):
        run_batch(broken, tmp_path / "o.parquet", double_x, progress=False)
    assert not (tmp_path / "o.parquet").exists()


def test_empty_inputs_give_zero_row_outputs_with_key_and_error_columns(tmp_path):
    def never(chunk):
        raise AssertionError("score_fn must not be called for empty input")

    header_only = tmp_path / "h.csv"
    header_only.write_text("txn_id,x\n")
    res = run_batch(header_only, tmp_path / "a.parquet", never, id_column="txn_id", progress=False)
    table = pq.read_table(res.output)
    assert table.num_rows == 0 and table.column_names == ["txn_id", "error"]
    assert table.schema.field("error").type == pa.string()
    assert (res.n_rows, res.n_chunks) == (0, 0)

    (tmp_path / "empty_dir").mkdir()
    res = run_batch(tmp_path / "empty_dir", tmp_path / "b.csv", never, progress=False)
    assert list(pd.read_csv(res.output).columns) == ["row_id", "path", "error"]

    res = run_batch(pd.DataFrame({"x": pd.Series([], dtype="float64")}), tmp_path / "c.parquet",
                    never, progress=False)
    assert pq.read_table(res.output).schema.field("row_id").type == pa.int64()


# --------------------------------------------------------------------------- progress + csv output


def test_progress_bar_and_callback(tmp_path, capsys):
    df = pd.DataFrame({"x": np.arange(20)})
    seen = []
    run_batch(df, tmp_path / "a.parquet", double_x, chunk_size=7, progress=False,
              on_chunk_done=lambda done, total: seen.append((done, total)))
    assert seen == [(7, 20), (14, 20), (20, 20)]
    assert "row" not in capsys.readouterr().err

    run_batch(df, tmp_path / "b.parquet", double_x, chunk_size=7, progress=True)
    err = capsys.readouterr().err
    assert "20/20" in err and "row" in err


def test_csv_output_writes_list_columns_as_json(tmp_path):
    def topk(chunk):
        return pd.DataFrame({"top": [[int(v), int(v) + 1] for v in chunk["x"]]})

    res = run_batch(pd.DataFrame({"x": [1, 5]}), tmp_path / "o.csv", topk, progress=False)
    out = pd.read_csv(res.output)
    assert [json.loads(v) for v in out["top"]] == [[1, 2], [5, 6]]


def test_score_chunk_keeps_index_and_adds_error_column():
    chunk = pd.DataFrame({"x": [1, 2, 3]}, index=[10, 11, 12])
    scored = score_chunk(double_x, chunk)
    assert scored.index.tolist() == [10, 11, 12]
    assert scored.columns.tolist() == ["score", "error"] and scored["error"].isna().all()


# --------------------------------------------------------------------------- ray engine


def test_ray_engine_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail even where ray is installed
    with pytest.raises(DependencyError, match=r"pip install 'lepton-apps\[ray\]'"):
        run_batch(pd.DataFrame({"x": [1]}), tmp_path / "o.parquet", double_x, engine="ray")
    assert not (tmp_path / "o.parquet.parts").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'lepton-apps[ray]')")
def test_ray_engine_gives_the_same_output_as_local(tmp_path):
    n = 150  # 19 chunks of 8: more than one window of chunks handed to Ray
    df = pd.DataFrame({"key": [f"id{i}" for i in range(n)], "x": np.arange(n)})

    def fussy(chunk):  # defined inside the test so Ray pickles it by value
        if (chunk["x"] % 17 == 3).any() or chunk["x"].between(40, 47).any():
            raise ValueError("bad row")
        return pd.DataFrame({"score": chunk["x"] * 2, "note": None})

    local = run_batch(df, tmp_path / "local.parquet", fussy, id_column="key", chunk_size=8,
                      progress=False)
    ray_res = run_batch(df, tmp_path / "ray.parquet", fussy, id_column="key", chunk_size=8,
                        engine="ray", progress=False)
    assert isinstance(ray_res, BatchResult) and ray_res.n_chunks == 19
    assert ray_res.n_errors == local.n_errors == 8 + 9
    assert pq.read_table(ray_res.output).equals(pq.read_table(local.output))
    assert pd.read_parquet(ray_res.output)["key"].tolist() == df["key"].tolist()
