"""Answer feedback in the service database: the Store's feedback table (SQLite and a real PostgreSQL), the
FeedbackStore API of the support page, the one-time import of the old support_feedback.sqlite file, and the
migration from revision 0001."""
import datetime as dt
import shutil
import sqlite3
import threading
import uuid
from pathlib import Path

import pandas as pd
import pytest

import sqlalchemy as sa

from lepton_apps.errors import ConfigError, DataError  # noqa: E402
from lepton_apps.store import Store  # noqa: E402
from lepton_apps.support.feedback import FeedbackStore, legacy_feedback_path  # noqa: E402

# The table of earlier versions, exactly as apps/support/feedback.py created it.
LEGACY_SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    faq_id TEXT,
    confidence REAL,
    handoff INTEGER NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    model_version TEXT NOT NULL
)"""
LEGACY_ROWS = [("2026-11-02T09:15:00+00:00", "my card was stolen", "Freeze the card…", "lost-card", 0.91, 0, 1, "s@1"),
               ("2026-11-03T10:00:00+00:00", "wie spät ist es?", "", None, None, 1, -1, "s@1"),
               ("2026-11-04T11:30:00+00:00", "refund <b>now</b>", "Reply within 30 days.", "refund", 0.55, 0, -1, "s@2")]


def write_legacy(path, rows=LEGACY_ROWS):
    """Write an old-format feedback file at ``path`` with ``rows``; return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute(LEGACY_SCHEMA)
        db.executemany("INSERT INTO feedback (time, question, answer, faq_id, confidence, handoff, rating, model_version) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return path


@pytest.fixture(autouse=True)
def _no_outside_database(monkeypatch):
    monkeypatch.delenv("LEPTON_DB_URL", raising=False)
    monkeypatch.delenv("LEPTON_SUPPORT_FEEDBACK", raising=False)


def _round_trip(fs: FeedbackStore):
    """The FeedbackStore API as the support page uses it, on any database."""
    first = fs.add("q1", "a1", "f1", 1, "v1", confidence=0.9)
    second = fs.add("q2 <b>", "handoff", None, -1, "v1", handoff=True, request_id="req-42")
    assert second > first
    df = fs.frame()
    assert list(df.columns) == ["id", "time", "question", "answer", "faq_id", "confidence", "handoff", "rating",
                                "model_version", "request_id"]
    assert df["rating"].tolist() == [-1, 1] and df["question"].tolist() == ["q2 <b>", "q1"]
    assert df["handoff"].tolist() == [1, 0] and df["time"].str.endswith("+00:00").all()
    assert df["id"].tolist() == [second, first] and df["request_id"].iloc[0] == "req-42"
    assert pd.isna(df["request_id"].iloc[1]) and pd.isna(df["faq_id"].iloc[0]) and df["confidence"].iloc[1] == 0.9
    stamp = dt.datetime.fromisoformat(df["time"].iloc[0])
    assert abs((dt.datetime.now(dt.timezone.utc) - stamp).total_seconds()) < 120
    csv = pd.read_csv(pd.io.common.StringIO(fs.to_csv()))
    assert len(csv) == 2 and list(csv.columns)[:4] == ["id", "time", "question", "answer"]
    assert csv["question"].tolist() == ["q2 <b>", "q1"] and csv["handoff"].tolist() == [1, 0]


def _rejects_bad_ratings(fs: FeedbackStore):
    before = len(fs.frame())
    for bad in (0, 2, -2, True, "1", None, 0.5):
        with pytest.raises(DataError, match="rating must be"):
            fs.add("q", "a", None, bad, "v")
    with pytest.raises(DataError, match="question must be text"):
        fs.add(None, "a", None, 1, "v")
    with pytest.raises(DataError, match="confidence must be a finite number"):
        fs.add("q", "a", None, 1, "v", confidence=float("nan"))
    with pytest.raises(DataError, match="model_version is empty"):
        fs.add("q", "a", None, 1, " ")
    assert len(fs.frame()) == before


def _check_constraint_holds(store: Store):
    """The database itself refuses a rating other than +1 / -1 (a writer that skips add_feedback)."""
    row = dict(time=dt.datetime(2026, 12, 1), question="q", answer="a", faq_id=None, confidence=None, handoff=False,
               rating=0, model_version="v", request_id=None)
    with pytest.raises(sa.exc.IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(store.t.feedback.insert().values(**row))


def _schema_matches_migrations(store: Store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import lepton_apps.store

    newest = max(p.stem.split("_")[0] for p in
                 (Path(lepton_apps.store.__file__).parent / "migrations" / "versions").glob("0*.py"))
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == newest
        diff = compare_metadata(MigrationContext.configure(conn), store.t.metadata)
    assert diff == []


# --------------------------------------------------------------------------- SQLite

def test_feedback_round_trip_and_csv_on_sqlite(tmp_path):
    home = tmp_path / "lepton_home"
    fs = FeedbackStore()
    assert not fs.opened and not (home / "lepton.db").exists()    # opening the page creates no database
    assert fs.location == f"sqlite:///{(home / 'lepton.db').resolve()}" and fs.frame().empty
    _round_trip(fs)
    assert fs.opened and (home / "lepton.db").is_file()
    assert FeedbackStore().frame()["question"].tolist() == ["q2 <b>", "q1"]   # the service database: same rows
    assert Store.open().feedback_frame()["question"].tolist() == ["q1", "q2 <b>"]   # the Store: oldest first


def test_feedback_rating_validation_on_sqlite(tmp_path):
    fs = FeedbackStore(url=f"sqlite:///{tmp_path / 'x.db'}")
    _rejects_bad_ratings(fs)
    _check_constraint_holds(Store.open(f"sqlite:///{tmp_path / 'x.db'}"))
    with pytest.raises(ConfigError, match="FeedbackStore takes a lepton_apps.store.Store"):
        FeedbackStore(tmp_path / "fb.sqlite")   # the old call with a file path says what to do now


def test_store_feedback_frame_since_and_request_id(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    a = store.add_feedback("old", "a", "f", 1, "v", request_id="r-1")
    with store.engine.begin() as conn:   # move the first row into the past
        conn.execute(store.t.feedback.update().where(store.t.feedback.c.id == a)
                     .values(time=dt.datetime(2026, 1, 1, 12, 0)))
    store.add_feedback("new", "b", None, -1, "v", confidence=0.25)
    df = store.feedback_frame()
    assert df["question"].tolist() == ["old", "new"] and df["request_id"].tolist()[0] == "r-1"
    assert df["handoff"].tolist() == [False, False] and df["time"].iloc[0] == pd.Timestamp(2026, 1, 1, 12)
    since = dt.datetime(2026, 6, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert store.feedback_frame(since=since)["question"].tolist() == ["new"]
    with pytest.raises(DataError, match="request_id is longer than 64"):
        store.add_feedback("q", "a", None, 1, "v", request_id="x" * 65)


def test_schema_py_mirrors_the_migrations_and_0001_databases_upgrade(tmp_path):
    from alembic import command
    from alembic.config import Config

    import lepton_apps.store

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store.open(url, migrate=False)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(lepton_apps.store.__file__).with_name("migrations")))
    with old.engine.begin() as conn:   # a database made by the previous release: keys and audit only
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    _, token = old.create_key("before-0002", ["support"])
    store = Store.open(url)
    assert store.verify(token).name == "before-0002"
    _schema_matches_migrations(store)
    assert store.add_feedback("q", "a", None, 1, "v") == 1


# --------------------------------------------------------------------------- the old feedback file

def test_legacy_file_is_imported_exactly_once(tmp_path, caplog):
    home = tmp_path / "lepton_home"
    legacy = write_legacy(home / "support_feedback.sqlite")
    assert legacy_feedback_path() == legacy
    with caplog.at_level("WARNING", logger="lepton_apps.support.feedback"):
        fs = FeedbackStore()
    assert fs.opened and fs.imported == 3            # an old file opens (and creates) the database at once
    assert "imported 3 of 3 rating(s)" in caplog.text and "support_feedback.sqlite.imported" in caplog.text
    assert not legacy.exists() and (home / "support_feedback.sqlite.imported").is_file()
    df = fs.frame()
    assert df["question"].tolist() == ["refund <b>now</b>", "wie spät ist es?", "my card was stolen"]
    assert df["time"].tolist() == ["2026-11-04T11:30:00+00:00", "2026-11-03T10:00:00+00:00", "2026-11-02T09:15:00+00:00"]
    assert df["rating"].tolist() == [-1, -1, 1] and df["handoff"].tolist() == [0, 1, 0]
    assert df["model_version"].tolist() == ["s@2", "s@1", "s@1"] and df["request_id"].isna().all()
    assert df["answer"].tolist()[1] == "" and pd.isna(df["faq_id"].iloc[1]) and df["confidence"].iloc[2] == 0.91

    again = FeedbackStore()                           # nothing left to import
    assert again.imported == 0 and len(again.frame()) == 3

    # the same file put back (say from a backup) with one rating added since: only that one is new
    shutil.copy(home / "support_feedback.sqlite.imported", legacy)
    write_legacy(legacy, [("2026-11-05T08:00:00+00:00", "late", "x", None, None, 0, 1, "s@2")])
    third = FeedbackStore()
    assert third.imported == 1 and len(third.frame()) == 4
    assert (home / "support_feedback.sqlite.imported2").is_file() and not legacy.exists()


def test_legacy_file_that_cannot_be_renamed_is_not_imported_twice(tmp_path, monkeypatch):
    legacy = write_legacy(tmp_path / "elsewhere" / "fb.sqlite")
    monkeypatch.setenv("LEPTON_SUPPORT_FEEDBACK", str(legacy))
    monkeypatch.setattr(type(legacy), "replace", lambda self, target: (_ for _ in ()).throw(PermissionError("read-only")))
    assert FeedbackStore().imported == 3 and legacy.is_file()
    fs = FeedbackStore()
    assert fs.imported == 0 and len(fs.frame()) == 3


def test_concurrent_imports_of_one_file_add_each_row_once(tmp_path):
    from lepton_apps.support.feedback import read_legacy_feedback

    url = f"sqlite:///{tmp_path / 'c.db'}"
    rows = read_legacy_feedback(write_legacy(tmp_path / "old.sqlite"))
    Store.open(url)
    stores, counts = [Store.open(url) for _ in range(4)], []
    threads = [threading.Thread(target=lambda s=s: counts.append(s.import_feedback(rows, source="/x/old.sqlite")))
               for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == [0, 0, 0, 3] and len(Store.open(url).feedback_frame()) == 3


def test_invalid_legacy_file_is_an_error_and_imports_nothing(tmp_path, monkeypatch):
    legacy = tmp_path / "lepton_home" / "support_feedback.sqlite"
    legacy.parent.mkdir(parents=True)
    with sqlite3.connect(legacy) as db:
        db.execute("CREATE TABLE notes (x TEXT)")
    with pytest.raises(DataError, match="has no 'feedback' table") as err:
        FeedbackStore()
    assert str(legacy) in str(err.value) and legacy.is_file()
    legacy.unlink()
    write_legacy(legacy, [LEGACY_ROWS[0], ("yesterday", "q", "a", None, None, 0, 1, "v")])
    with pytest.raises(DataError, match="row id 2 has an unreadable time 'yesterday'"):
        FeedbackStore()
    assert legacy.is_file() and Store.open().feedback_frame().empty   # all or none


# --------------------------------------------------------------------------- PostgreSQL

@pytest.fixture
def pg_url(postgres):
    """A fresh, empty database on the session's PostgreSQL server (so rows of other tests never show)."""
    import psycopg

    name = f"fb_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


def test_feedback_round_trip_validation_and_schema_on_postgres(pg_url, monkeypatch):
    monkeypatch.setenv("LEPTON_DB_URL", pg_url)        # as the service and the page find it
    fs = FeedbackStore()
    assert fs.opened and fs.location == pg_url
    _round_trip(fs)
    _rejects_bad_ratings(fs)
    store = Store.open(pg_url)
    _check_constraint_holds(store)
    _schema_matches_migrations(store)
    raw = store.feedback_frame()
    assert raw["request_id"].isna().tolist() == [True, False] and raw["request_id"].iloc[1] == "req-42"
    assert raw["handoff"].tolist() == [False, True] and raw["rating"].tolist() == [1, -1]
    assert FeedbackStore(store).frame()["id"].tolist() == fs.frame()["id"].tolist()


def test_legacy_file_is_imported_once_into_postgres(pg_url, tmp_path):
    legacy = write_legacy(tmp_path / "lepton_home" / "support_feedback.sqlite")
    assert FeedbackStore(url=pg_url).imported == 3 and not legacy.exists()
    shutil.copy(legacy.with_name(legacy.name + ".imported"), legacy)   # the file comes back unchanged
    fs = FeedbackStore(url=pg_url)
    assert fs.imported == 0 and fs.frame()["question"].tolist()[-1] == "my card was stolen" and len(fs.frame()) == 3


def test_support_page_names_the_postgres_database_without_its_password(pg_url, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    secret = "s3cr3t-pw"
    monkeypatch.setenv("LEPTON_DB_URL", pg_url.replace("postgres@", f"postgres:{secret}@"))   # trust auth ignores it
    FeedbackStore().add("from the service", "answer", "f1", 1, "v1", request_id="r-9")
    at = AppTest.from_file(str(ROOT / "apps/support/page.py"), default_timeout=180).run()
    assert not at.exception and not at.error
    shown = [c.value for c in at.caption] + [m.value for m in at.markdown] + [i.value for i in at.info]
    assert any(c.startswith("Feedback database: `postgresql+psycopg://postgres:***@127.0.0.1") for c in shown)
    assert "1 rating(s) in `postgresql+psycopg://postgres:***@" in " ".join(shown)
    assert not [s for s in shown if secret in s]
    assert at.tabs[1].dataframe[0].value["question"].tolist() == ["from the service"]
