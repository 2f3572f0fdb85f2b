"""The HTTP service (lepton_apps.serve): every endpoint and error code with FastAPI's TestClient,
micro-batching, and a real `lepton-apps serve` process on a free localhost port."""
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import free_port  # noqa: E402
from lepton_apps.serve import refs_from_args  # noqa: E402
from lepton_apps.serve.app import ServeConfig, create_app  # noqa: E402
from lepton_apps.serve.batching import MicroBatcher  # noqa: E402
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: E402,F401 - fixtures
from test_medical_pipeline import tiny_bundle  # noqa: E402
from test_support_fixtures import demo_build, demo_bundle  # noqa: E402,F401 - fixtures


@pytest.fixture(scope="module")
def medical(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("serve_medical"), n=40, epochs=1)


@pytest.fixture
def store(tmp_path):
    from lepton_apps.store import Store

    return Store.open(f"sqlite:///{tmp_path / 'service.db'}")


@pytest.fixture
def client(medical, fraud_bundle, demo_bundle, store):  # noqa: F811
    refs = {"medical": str(medical[0]), "finance": str(fraud_bundle), "support": str(demo_bundle)}
    app = create_app(refs, config=ServeConfig(max_body_bytes=200_000, max_wait_ms=2), load_now=True, store=store)
    _, token = store.create_key("tests", ["*"])
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        c.store = store
        yield c


def _records(fraud_data, n=3):  # noqa: F811
    _, new = fraud_data
    return json.loads(new.head(n).to_json(orient="records", date_format="iso"))


def _png(medical):
    return sorted(medical[1].rglob("*.png"))[0].read_bytes()


def test_health_ready_models_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and set(ready.json()["models"]) == {"medical", "finance", "support"}
    models = client.get("/v1/models").json()["models"]
    assert models["support"]["loaded"] and models["support"]["model_version"] == ready.json()["models"]["support"]
    assert models["medical"]["request_schema"] == "MedicalRequest" and models["finance"]["task"] == "binary"
    spec = client.get("/openapi.json").json()
    for path in ("/v1/medical/predict", "/v1/finance/predict", "/v1/support/predict", "/v1/support/explain",
                 "/v1/finance/score_one"):
        assert path in spec["paths"], path
    assert "multipart/form-data" in spec["paths"]["/v1/medical/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_predict_every_domain_with_model_version_and_per_item_errors(client, medical, fraud_data):  # noqa: F811
    versions = client.get("/readyz").json()["models"]
    r = client.post("/v1/support/predict", json={"questions": ["my card was stolen", "   "]})
    assert r.status_code == 200 and r.json()["model_version"] == versions["support"]
    good, blank = r.json()["results"]
    assert good["faq_id"] == "lost-card" and good["error"] is None and blank["error"] == "empty question"

    images = [{"data_base64": base64.b64encode(_png(medical)).decode(), "name": "a.png"},
              {"data_base64": base64.b64encode(b"not an image").decode(), "name": "bad.png"}]
    r = client.post("/v1/medical/predict", json={"images": images})
    assert r.status_code == 200 and r.json()["model_version"] == versions["medical"]
    ok, bad = r.json()["results"]
    assert ok["item"] == "a.png" and ok["error"] is None and 0 <= ok["score"] <= 1
    assert bad["item"] == "bad.png" and bad["error"] and bad["score"] is None

    files = [("files", ("x.png", _png(medical), "image/png")), ("files", ("y.png", b"\x89PNG trunc", "image/png"))]
    r = client.post("/v1/medical/predict", files=files)
    assert r.status_code == 200
    assert [(x["item"], x["error"] is None) for x in r.json()["results"]] == [("x.png", True), ("y.png", False)]
    assert r.json()["results"][0]["score"] == pytest.approx(ok["score"], abs=1e-6)  # same image, same score

    recs = _records(fraud_data)
    broken = {**recs[0], "timestamp": "not a time"}
    r = client.post("/v1/finance/predict", json={"transactions": [*recs, broken]})
    assert r.status_code == 200 and r.json()["model_version"] == versions["finance"]
    res = r.json()["results"]
    assert [x["transaction_id"] for x in res[:3]] == [str(t["transaction_id"]) for t in recs]
    assert all(x["error"] is None for x in res[:3]) and "timestamp" in res[3]["error"] and res[3]["score"] is None


def test_explain_and_score_one(client, medical, fraud_data):  # noqa: F811
    r = client.post("/v1/support/explain", json={"questions": ["I lost my card on the bus"]})
    assert r.status_code == 200 and r.json()["sources"][0]["faq_id"] == "lost-card" and r.json()["model_version"]
    r = client.post("/v1/medical/explain",
                    json={"images": [{"data_base64": base64.b64encode(_png(medical)).decode()}]})
    assert r.status_code == 200 and r.json()["overlay_png_base64"] and len(r.json()["heatmap"]) == 64
    r = client.post("/v1/support/explain", json={"questions": ["a", "b"]})
    assert r.status_code == 422 and "exactly one item" in r.json()["detail"]
    tx = _records(fraud_data, 1)[0]
    r = client.post("/v1/finance/score_one", json={"transaction": tx})
    assert r.status_code == 200 and set(r.json()) >= {"model_version", "score", "decision", "reasons"}
    r = client.post("/v1/finance/score_one", json={"transaction": {**tx, "amount": -5}})
    assert r.status_code == 400 and "amount" in r.json()["detail"]


def test_bad_requests_get_clear_status_codes(client):
    r = client.post("/v1/support/predict", content=b'{"questions": ["x"', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "malformed JSON" in r.json()["detail"]
    r = client.post("/v1/support/predict", json={"questions": ["x"], "colour": "red"})
    assert r.status_code == 422 and "colour: Extra inputs are not permitted" in r.json()["detail"]
    r = client.post("/v1/support/predict", json={"questions": []})
    assert r.status_code == 422 and "questions" in r.json()["detail"]
    r = client.post("/v1/medical/predict", json={"images": [{"data_base64": "@@not base64@@"}]})
    assert r.status_code == 422 and "not valid base64" in r.json()["detail"]
    r = client.post("/v1/support/predict", content=b"questions=x", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["fix"]
    r = client.post("/v1/support/predict", json={"questions": ["x" * 1000] * 300})
    assert r.status_code == 413 and "larger than the limit of 200,000 bytes" in r.json()["detail"]
    assert client.post("/v1/nowhere/predict", json={}).status_code == 404
    assert client.post("/v1/support/predict", json={"questions": ["a", "b", "c"]}).status_code == 200
    metrics = client.get("/metrics").text
    assert 'lepton_requests_total{domain="support",endpoint="predict"' in metrics
    assert 'status="422"' in metrics and 'status="415"' in metrics
    assert "lepton_request_latency_seconds_bucket" in metrics
    assert 'lepton_batch_size_items_bucket{domain="support",le="4.0"} 1.0' in metrics


def test_not_ready_until_loaded_and_timeouts(fraud_bundle, tmp_path):  # noqa: F811
    app = create_app({"finance": str(tmp_path / "no-bundle-here")}, load_now=True, config=ServeConfig(auth=False))
    with TestClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "no model named" in r.json()["errors"]["finance"]
        assert c.get("/healthz").status_code == 200
        r = c.post("/v1/finance/predict", json={"transactions": [{}]})
        assert r.status_code == 503 and "readyz" in r.json()["fix"]

    app = create_app({"finance": str(fraud_bundle)}, config=ServeConfig(timeout_s=0.2, auth=False), load_now=True)
    model = app.state.lepton.models["finance"]
    slow = model.predict
    model.predict = lambda items: (time.sleep(1.0), slow(items))[1]
    with TestClient(app) as c:
        r = c.post("/v1/finance/predict", json={"transactions": [{}]})
        assert r.status_code == 504 and "longer than 0.2 s" in r.json()["detail"]


def test_concurrent_requests_are_micro_batched(demo_bundle):  # noqa: F811
    import httpx

    app = create_app({"support": str(demo_bundle)}, config=ServeConfig(max_batch=64, max_wait_ms=200, auth=False),
                     load_now=True)
    model = app.state.lepton.models["support"]
    calls = []
    inner = model.predict
    model.predict = lambda items: (calls.append(len(items)), inner(items))[1]
    questions = [f"my card was stolen {i}" for i in range(8)]

    async def drive():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            replies = await asyncio.gather(*[c.post("/v1/support/predict", json={"questions": [q]}) for q in questions])
        await app.state.lepton.batchers["support"][1].close()
        return replies

    replies = asyncio.run(drive())
    assert [r.status_code for r in replies] == [200] * 8
    assert [r.json()["results"][0]["question"] for r in replies] == questions  # each request gets its own answer
    assert sum(calls) == 8 and len(calls) < 8  # fewer predict calls than requests


def test_micro_batcher_groups_splits_and_propagates_errors():
    seen = []

    def predict(items, scale=1, names=None):
        if "boom" in items:
            raise ValueError("boom")
        seen.append((list(items), scale, names))
        return [x * scale for x in items]

    async def main():
        b = MicroBatcher(predict, max_batch=5, max_wait_s=0.05)
        out = await asyncio.gather(b.submit([1, 2]), b.submit([3]), b.submit([4], {"scale": 10}),
                                   b.submit([5, 6, 7, 8, 9, 10]), b.submit([7], per_item={"names": ["n7"]}))
        with pytest.raises(ValueError, match="boom"):
            await b.submit(["boom"])
        with pytest.raises(ValueError, match="per-item option"):
            await b.submit([1, 2], per_item={"names": ["only one"]})
        await b.close()
        return out

    out = asyncio.run(main())
    assert out == [[1, 2], [3], [40], [5, 6, 7, 8, 9, 10], [7]]
    assert seen == [([1, 2, 3], 1, None),              # same options: one call
                    ([4], 10, None),                   # other shared options: a call of its own
                    ([7], 1, ["n7"]),                  # per-item options travel with their items
                    ([5, 6, 7, 8, 9, 10], 1, None)]    # over max_batch: alone, after the batch, never split


def test_refs_from_args_defaults_to_production_then_latest(fraud_bundle, demo_bundle):  # noqa: F811
    from lepton_apps.errors import ConfigError
    from lepton_apps.registry import Registry

    with pytest.raises(ConfigError, match="no model to serve"):
        refs_from_args([])
    reg = Registry()
    reg.register(fraud_bundle, "fraud-a")
    reg.register(fraud_bundle, "fraud-b")
    reg.promote("fraud-a", "production")
    reg.register(demo_bundle, "faq-a")
    assert refs_from_args([]) == {"finance": "finance:production", "support": "support:latest"}
    assert refs_from_args(["fraud-b", str(demo_bundle)]) == {"finance": "fraud-b", "support": str(demo_bundle)}
    with pytest.raises(ConfigError, match="two finance models"):
        refs_from_args(["fraud-a", "fraud-b"])


def test_keys_scopes_and_revocation(client):
    from lepton_apps.store import Store  # noqa: F401

    store = client.store
    body = {"questions": ["my card was stolen"]}
    assert client.get("/healthz", headers={"Authorization": ""}).status_code == 200  # operations stay open
    r = client.post("/v1/support/predict", json=body, headers={"Authorization": ""})
    assert r.status_code == 401 and "no API key" in r.json()["detail"] and "keys create" in r.json()["fix"]
    r = client.post("/v1/support/predict", json=body, headers={"Authorization": "Bearer lk_nope_nope"})
    assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]
    key, token = store.create_key("fraud-only", ["finance"])
    r = client.post("/v1/support/predict", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and "'fraud-only' is not allowed to use support" in r.json()["detail"]
    _, support_token = store.create_key("chat-widget", ["support"])
    assert client.post("/v1/support/predict", json=body, headers={"X-API-Key": support_token,
                                                                   "Authorization": ""}).status_code == 200
    store.revoke_key("chat-widget")
    r = client.post("/v1/support/predict", json=body, headers={"X-API-Key": support_token, "Authorization": ""})
    assert r.status_code == 401
    assert all(len(k.id) == 12 and k.name for k in store.keys())
    raw = store.engine.raw_connection()
    try:
        stored = " ".join(str(v) for row in raw.execute("SELECT * FROM api_keys").fetchall() for v in row)
    finally:
        raw.close()
    assert token.split("_", 2)[2] not in stored and support_token.split("_", 2)[2] not in stored  # hashed only


def test_every_model_request_is_audited_without_raw_input(client, medical):
    store = client.store
    r = client.post("/v1/support/predict", json={"questions": ["my card was stolen in Zanzibar", "who won the match"]})
    rid = r.headers["x-request-id"]
    png = _png(medical)
    client.post("/v1/medical/predict", files=[("files", ("person123_bacteria_1.png", png, "image/png"))])
    client.post("/v1/support/predict", json={"questions": []})  # 422, audited too
    client.post("/v1/support/predict", json={"questions": ["x"]}, headers={"Authorization": ""})  # 401
    rows = store.audit_frame()
    assert rows["status"].tolist() == [200, 200, 422, 401] and rows["request_id"].iloc[0] == rid
    first = rows.iloc[0]
    assert first["domain"] == "support" and first["n_items"] == 2 and first["key_id"] == store.keys()[0].id
    assert first["model_version"] == client.get("/readyz").json()["models"]["support"]
    result = json.loads(first["result"])
    assert result[0]["faq_id"] == "lost-card" and "question" not in result[0]
    assert "Zanzibar" not in first["result"] and len(first["input_digest"]) == 64
    med = json.loads(rows.iloc[1]["result"])[0]
    assert "item" not in med and "person123" not in rows.iloc[1]["result"] and 0 <= med["score"] <= 1
    assert pd.isna(rows["key_id"].iloc[3]) and pd.isna(rows["result"].iloc[3])


def test_audit_failure_answers_503_and_readyz_says_why(client, monkeypatch):
    store = client.store

    def down(rows):
        raise OSError("database is down")

    monkeypatch.setattr(store, "audit", down)
    r = client.post("/v1/support/predict", json={"questions": ["my card was stolen"]})
    assert r.status_code == 503 and "audit log (OSError: database is down)" in r.json()["detail"]
    monkeypatch.setattr(store, "ping", lambda: "OperationalError: unable to open database file")
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "unable to open" in ready.json()["errors"]["database"]


def test_audit_free_text_keeps_support_questions_when_switched_on(demo_bundle, store):  # noqa: F811
    app = create_app({"support": str(demo_bundle)}, config=ServeConfig(audit_free_text=True, auth=False),
                     load_now=True, store=store)
    with TestClient(app) as c:
        assert c.post("/v1/support/predict", json={"questions": ["my card was stolen"]}).status_code == 200
    assert json.loads(store.audit_frame()["result"].iloc[0])[0]["question"] == "my card was stolen"


def test_keys_and_audit_export_cli(tmp_path, capsys):
    from lepton_apps.cli import main

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["keys", "create", "triage", "--domains", "medical,finance", "--db-url", db]) == 0
    out = capsys.readouterr().out
    token = out.strip().splitlines()[-1]
    assert token.startswith("lk_") and "shown only now" in out
    assert main(["keys", "create", "triage", "--domains", "medical", "--db-url", db]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["keys", "list", "--db-url", db]) == 0
    listed = capsys.readouterr().out
    assert "triage" in listed and "finance,medical" in listed and token not in listed
    assert main(["keys", "revoke", "triage", "--db-url", db]) == 0 and "revoked 'triage'" in capsys.readouterr().out
    assert main(["keys", "revoke", "nobody", "--db-url", db]) == 2 and "no key named" in capsys.readouterr().err
    assert main(["audit", "export", "--out", str(tmp_path / "a.csv"), "--since", "2026-01-01", "--db-url", db]) == 0
    assert "0 audit rows" in capsys.readouterr().out
    assert main(["audit", "export", "--out", str(tmp_path / "a.csv"), "--since", "yesterday", "--db-url", db]) == 2
    assert "cannot read 'yesterday' as a time" in capsys.readouterr().err


def test_lepton_apps_serve_runs_a_real_server(fraud_bundle, fraud_data, tmp_path):  # noqa: F811
    from lepton_apps.store import Store

    _, token = Store.open().create_key("real-server", ["finance"])  # the server's default database ($LEPTON_HOME)
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    proc = _start_server([str(fraud_bundle)], port, log)
    try:
        _wait_ready(base, proc, log, seconds=90)
        body = json.dumps({"transactions": _records(fraud_data, 2)}).encode()
        req = urllib.request.Request(base + "/v1/finance/predict", data=body,
                                     headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            reply = json.loads(r.read())
        assert len(reply["results"]) == 2 and reply["model_version"].startswith("bundle@")
        assert len(Store.open().audit_frame()) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_reload_swaps_models_without_downtime_and_follows_a_moved_alias(fraud_bundle, fraud_data, store, tmp_path):  # noqa: F811
    import shutil

    from lepton_apps.registry import Registry

    reg = Registry()
    first = reg.register(fraud_bundle, "fraud-v1")
    reg.promote("fraud-v1", "production")
    app = create_app({"finance": "finance:production"}, config=ServeConfig(watch_s=0), load_now=True, store=store)
    _, reader = store.create_key("reader", ["finance"])
    _, admin = store.create_key("ops", ["finance"], scope="admin")
    body = {"transactions": _records(fraud_data, 1)}
    with TestClient(app) as c:
        v1 = c.post("/v1/finance/predict", json=body, headers={"x-api-key": reader}).json()["model_version"]
        assert v1.startswith("fraud-v1@")
        r = c.post("/v1/admin/reload", json={}, headers={"x-api-key": reader})
        assert r.status_code == 403 and "--scope admin" in r.json()["fix"]
        copy = tmp_path / "v2"
        shutil.copytree(first.path, copy)
        reg.register(copy, "fraud-v2")
        reg.promote("fraud-v2", "production")
        assert app.state.lepton.moved() == ["finance"]
        r = c.post("/v1/admin/reload", json={"domain": "finance"}, headers={"x-api-key": admin})
        assert r.status_code == 200
        assert r.json()["reloaded"][0]["old_version"] == v1 and r.json()["reloaded"][0]["new_version"].startswith("fraud-v2@")
        v2 = c.post("/v1/finance/predict", json=body, headers={"x-api-key": reader}).json()["model_version"]
        assert v2.startswith("fraud-v2@") and app.state.lepton.moved() == []
        r = c.post("/v1/admin/reload", json={"domain": "finance", "ref": str(tmp_path / "missing")},
                   headers={"x-api-key": admin})
        assert r.status_code == 400 and "no model named" in r.json()["detail"]  # not swapped
        assert c.post("/v1/finance/predict", json=body, headers={"x-api-key": reader}).json()["model_version"] == v2
        assert c.post("/v1/admin/reload", json={"domain": "medical"}, headers={"x-api-key": admin}).status_code == 404
    audit = store.audit_frame()
    predicted = audit[audit["endpoint"] == "predict"]
    assert predicted["model_version"].tolist() == [v1, v2, v2]  # which version answered each request
    assert audit[audit["endpoint"] == "reload"]["status"].tolist() == [403, 200, 400]


def test_the_alias_watcher_swaps_in_a_promoted_bundle(fraud_bundle, fraud_data, store, tmp_path):  # noqa: F811
    import shutil

    from lepton_apps.registry import Registry

    reg = Registry()
    first = reg.register(fraud_bundle, "fraud-a")
    reg.promote("fraud-a", "production")
    app = create_app({"finance": "finance:production"}, config=ServeConfig(watch_s=0.2, auth=False), store=store)
    with TestClient(app) as c:
        deadline = time.time() + 30
        while c.get("/readyz").status_code != 200 and time.time() < deadline:
            time.sleep(0.1)
        shutil.copytree(first.path, tmp_path / "b")
        reg.register(tmp_path / "b", "fraud-b")
        reg.promote("fraud-b", "production")
        while not c.get("/readyz").json()["models"]["finance"].startswith("fraud-b@") and time.time() < deadline:
            time.sleep(0.1)
        assert c.get("/readyz").json()["models"]["finance"].startswith("fraud-b@")
        r = c.post("/v1/finance/predict", json={"transactions": _records(fraud_data, 1)})
        assert r.json()["model_version"].startswith("fraud-b@")


def _start_server(bundles, port, log):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = open(log, "a")
    return subprocess.Popen([sys.executable, "-m", "lepton_apps.cli", "serve", *bundles, "--port", str(port),
                             "--watch-s", "0"], stdout=out, stderr=subprocess.STDOUT, env=env)


def _wait_ready(base, proc, log, seconds=120):
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


@pytest.mark.slow
def test_kill_9_under_load_loses_no_audited_answer(medical, fraud_bundle, fraud_data, demo_bundle, tmp_path):  # noqa: F811
    """Bounded load from 16 clients across the three domains, kill -9 mid-load, restart: every request
    answered 200 is in the audit log exactly once, and no row is partial."""
    import httpx

    from lepton_apps.store import Store

    store = Store.open()
    _, token = store.create_key("load", ["*"])
    bundles = [str(medical[0]), str(fraud_bundle), str(demo_bundle)]
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    png = base64.b64encode(_png(medical)).decode()
    bodies = [("support", {"questions": ["my card was stolen"]}), ("medical", {"images": [{"data_base64": png}]}),
              ("finance", {"transactions": _records(fraud_data, 1)})]
    answered: list[str] = []

    async def load(n, kill_after=None, proc=None):
        sent = iter(range(n))

        async def client(c):
            for i in sent:
                domain, body = bodies[i % 3]
                try:
                    r = await c.post(f"{base}/v1/{domain}/predict", json=body)
                except httpx.HTTPError:
                    continue  # the server was killed: this request was not answered
                if r.status_code == 200:
                    answered.append(r.headers["x-request-id"])
                if kill_after is not None and len(answered) >= kill_after and proc.poll() is None:
                    proc.kill()  # SIGKILL: no shutdown code runs

        async with httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30) as c:
            await asyncio.gather(*[client(c) for _ in range(16)])

    proc = _start_server(bundles, port, log)
    try:
        _wait_ready(base, proc, log)
        asyncio.run(load(400, kill_after=150, proc=proc))
        proc.wait(timeout=30)
        assert proc.returncode == -9 and 150 <= len(answered) < 400
        proc = _start_server(bundles, port, log)
        _wait_ready(base, proc, log)
        before = len(answered)
        asyncio.run(load(60))
        assert len(answered) == before + 60
    finally:
        proc.kill()
        proc.wait(timeout=30)
    audit = Store.open().audit_frame()
    counts = audit["request_id"].value_counts()
    assert all(counts.get(rid, 0) == 1 for rid in answered)
    required = ["request_id", "created_at", "domain", "endpoint", "model_ref", "model_version", "status",
                "latency_ms", "n_items", "input_digest"]
    assert audit[required].notna().all().all()
    ok = audit[audit["status"] == 200]
    assert ok["result"].notna().all() and set(answered) <= set(ok["request_id"])


def test_batch_scoring_runs_are_audited_when_a_service_database_exists(fraud_bundle, fraud_data, tmp_path, capsys):  # noqa: F811
    from lepton_apps.cli import main
    from lepton_apps.store import Store

    _, new = fraud_data
    new.head(30).to_csv(tmp_path / "tx.csv", index=False)
    assert main(["finance", "predict", str(fraud_bundle), str(tmp_path / "tx.csv"), "--out", str(tmp_path / "a.csv")]) == 0
    assert "audit log" not in capsys.readouterr().out  # no service database: nothing recorded, none created
    store = Store.open()  # creates $LEPTON_HOME/lepton.db, as 'lepton-apps serve' or 'keys create' would
    assert main(["finance", "predict", str(fraud_bundle), str(tmp_path / "tx.csv"), "--out", str(tmp_path / "b.csv"),
                 "--no-resume"]) == 0
    assert "recorded in the audit log" in capsys.readouterr().out
    [row] = store.audit_frame().to_dict("records")
    assert row["endpoint"] == "batch" and row["n_items"] == 30 and row["status"] == 200 and row["domain"] == "finance"
    assert json.loads(row["result"])["rows"] == 30 and len(row["input_digest"]) == 64
