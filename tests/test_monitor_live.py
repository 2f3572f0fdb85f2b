"""Live performance from returned outcomes (issue 12 item 3): POST /v1/{domain}/feedback and
`lepton-apps monitor labels` attach outcomes to served predictions; `monitor live` measures each week with
the domain's own metrics."""
import datetime as dt
import json
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from lepton_apps import metrics as M  # noqa: E402
from lepton_apps.cli import main  # noqa: E402
from lepton_apps.monitor.live import attach, served_items, weekly  # noqa: E402
from lepton_apps.serve.app import ServeConfig, create_app  # noqa: E402
from lepton_apps.store import Store  # noqa: E402
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: E402,F401 - fixtures
from test_support_fixtures import demo_build, demo_bundle  # noqa: E402,F401 - fixtures


@pytest.fixture
def service(fraud_bundle, demo_bundle, tmp_path):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'service.db'}"
    store = Store.open(url)
    _, token = store.create_key("desk", ["finance", "support"])
    app = create_app({"finance": str(fraud_bundle), "support": str(demo_bundle)},
                     config=ServeConfig(watch_s=0, max_wait_ms=1), load_now=True, store=store)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        client.store, client.url = store, url
        yield client


def test_finance_outcomes_by_request_and_by_transaction_id_give_the_weeks_auc(service, fraud_data, capsys):  # noqa: F811
    _, new = fraud_data
    rows = new.head(300)
    records = json.loads(rows.to_json(orient="records", date_format="iso"))
    r = service.post("/v1/finance/predict", json={"transactions": records[:200]})
    assert r.status_code == 200
    request_id, results = r.headers["x-request-id"], r.json()["results"]
    # the first 150 outcomes name the request and the item; the rest come back by transaction id
    outcomes = [{"request_id": request_id, "item": i, "label": str(int(rows["label"].iloc[i]))} for i in range(150)]
    outcomes += [{"key": str(rows["transaction_id"].iloc[i]), "label": str(int(rows["label"].iloc[i]))}
                 for i in range(150, 200)]
    outcomes += [{"key": "no-such-transaction", "label": "1"}]
    fb = service.post("/v1/finance/feedback", json={"outcomes": outcomes})
    assert fb.status_code == 200 and fb.json()["stored"] == 201 and fb.json()["model_version"]
    assert service.post("/v1/finance/feedback", json={"outcomes": [{"label": "1"}]}).status_code == 400
    assert service.post("/v1/finance/feedback", json={"outcomes": [{"request_id": "x", "lable": "1"}]}).status_code == 422

    capsys.readouterr()
    assert main(["monitor", "live", "finance", "--json", "--db-url", service.url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["outcomes"] == {"outcomes": 201, "matched": 200, "unmatched": 1}
    [week] = report["weeks"]
    assert week["served"] == 200 and week["labelled"] == 200 and week["labels_complete"] is False  # this week
    y = rows["label"].head(200).to_numpy()
    scores = np.array([x["score"] for x in results])
    assert week["roc_auc"] == pytest.approx(M.roc_auc(y, scores))
    assert week["pr_auc"] == pytest.approx(M.pr_auc(y, scores))
    alerts = np.array([x["decision"] for x in results])
    assert week["alert_rate"] == pytest.approx(alerts.mean())
    assert week["recall_at_threshold"] == pytest.approx(alerts[y == 1].mean())
    # Card Precision@100 of the served day: the results carry each transaction's card (customer) id
    from lepton_apps.finance.evaluate import card_precision_at_k
    assert [x["customer_id"] for x in results] == [str(c) for c in rows["customer_id"].head(200)]
    expected = card_precision_at_k(y, scores, 100, np.zeros(200), rows["customer_id"].head(200).astype(str).to_numpy())
    assert week["card_precision_at_100"] == pytest.approx(expected)
    assert week["card_precision_at_100"] != pytest.approx(M.precision_at_k(y, scores, 100))  # cards, not rows


def test_score_one_outcomes_match_by_transaction_id(service, fraud_data, capsys):  # noqa: F811
    _, new = fraud_data
    records = json.loads(new.head(40).to_json(orient="records", date_format="iso"))
    answers = [service.post("/v1/finance/score_one", json={"transaction": t}).json() for t in records]
    assert [a["transaction_id"] for a in answers] == [str(t["transaction_id"]) for t in records]
    assert [a["customer_id"] for a in answers] == [str(t["customer_id"]) for t in records]
    outcomes = [{"key": str(t["transaction_id"]), "label": str(t["label"])} for t in records]
    assert service.post("/v1/finance/feedback", json={"outcomes": outcomes}).status_code == 200
    capsys.readouterr()
    assert main(["monitor", "live", "finance", "--json", "--db-url", service.url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["outcomes"]["matched"] == 40 and report["weeks"][0]["labelled"] == 40


def test_support_answered_accuracy_handoffs_and_thumbs_down(service):
    qs = ["my card was stolen", "how long does a transfer take", "what's the weather on mars"]
    r = service.post("/v1/support/predict", json={"questions": qs})
    rid, answers = r.headers["x-request-id"], r.json()["results"]
    assert [a["handoff"] for a in answers] == [False, False, True]
    truth = ["lost-card", "not-this-one", "out_of_scope"]  # the agent: the second answer was the wrong FAQ
    service.post("/v1/support/feedback", json={"outcomes": [{"request_id": rid, "item": i, "label": t}
                                                           for i, t in enumerate(truth)]})
    service.store.add_feedback(qs[0], answers[0]["answer"], answers[0]["faq_id"], -1, answers[0]["model_version"],
                               request_id=rid)
    from lepton_apps.domains import available_domains
    from lepton_apps.monitor.live import live_report

    spec = available_domains()["support"]
    table, counts = live_report(service.store, "support", spec.live_metrics_function())
    row = table.iloc[0]
    assert counts["matched"] == 3 and row["labelled"] == 3 and row["rated"] == 3  # one rating per request
    assert row["handoff_rate"] == pytest.approx(1 / 3) and row["answered_accuracy"] == pytest.approx(0.5)
    assert row["handoff_precision"] == 1.0 and row["thumbs_down_rate"] == 1.0


def test_monitor_labels_file_stores_every_row_and_reports_the_unmatched(service, fraud_data, tmp_path, capsys):  # noqa: F811
    _, new = fraud_data
    tx = json.loads(new.head(1).to_json(orient="records", date_format="iso"))[0]
    r = service.post("/v1/finance/score_one", json={"transaction": tx})
    path = tmp_path / "chargebacks.csv"
    pd.DataFrame({"request_id": [r.headers["x-request-id"], "0" * 32], "label": ["fraud", "1"]}).to_csv(path, index=False)
    capsys.readouterr()
    assert main(["monitor", "labels", str(path), "--domain", "finance", "--db-url", service.url]) == 0
    out = capsys.readouterr().out
    assert "stored 2 outcome(s)" in out and "1 match a served prediction, 1 do not (yet)" in out
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"request_id": ["a"], "outcome": ["1"]}).to_csv(bad, index=False)
    assert main(["monitor", "labels", str(bad), "--domain", "finance", "--db-url", service.url]) == 2
    assert "needs a 'label' column" in capsys.readouterr().err
    odd = tmp_path / "odd.csv"
    pd.DataFrame({"request_id": [r.headers["x-request-id"]], "label": ["maybe"]}).to_csv(odd, index=False)
    assert main(["monitor", "labels", str(odd), "--domain", "finance", "--db-url", service.url]) == 0
    capsys.readouterr()
    assert main(["monitor", "live", "finance", "--db-url", service.url]) == 2  # 'maybe' is neither fraud nor legit
    assert "neither fraud nor legitimate" in capsys.readouterr().err


def test_weeks_older_than_the_label_delay_are_complete_and_medical_metrics_at_the_operating_point():
    from lepton_apps.medical.evaluate import live_metrics

    monday = dt.datetime(2026, 11, 2, 9)
    served = pd.DataFrame({
        "request_id": [f"r{i}" for i in range(6)], "item": 0, "endpoint": "predict", "model_version": "m@1",
        "created_at": [monday] * 3 + [monday + dt.timedelta(days=14)] * 3,
        "probabilities": [{"normal": 1 - p, "lesion": p} for p in (0.9, 0.2, 0.7, 0.1, 0.8, 0.4)],
        "score": [0.9, 0.2, 0.7, 0.1, 0.8, 0.4], "decision": [True, False, True, False, True, False]})
    outcomes = pd.DataFrame({"id": range(6), "request_id": [f"r{i}" for i in range(6)], "item": 0, "key": None,
                             "label": ["lesion", "normal", "normal", "normal", "lesion", "lesion"]})
    joined, counts = attach(served, outcomes)
    assert counts == {"outcomes": 6, "matched": 6, "unmatched": 0}
    table = weekly(joined, live_metrics, label_delay_days=7, now=monday + dt.timedelta(days=20))
    first, second = table.to_dict("records")
    assert first["labels_complete"] and not second["labels_complete"]  # week 2 ends on day 21, + 7 d > day 20
    assert first["sensitivity"] == 1.0 and first["specificity"] == 0.5 and first["roc_auc"] == 1.0
    assert second["sensitivity"] == 0.5 and second["specificity"] == 1.0
    assert served_items(pd.DataFrame(columns=["status", "endpoint", "result"])).empty
    audit = pd.DataFrame({"request_id": ["a"], "created_at": [monday], "model_version": ["m@1"], "endpoint": ["predict"],
                          "status": [200], "result": [json.dumps([{"score": 0.7, "probabilities": {"normal": 0.3,
                                                                                                    "lesion": 0.7}}])]})
    flat = served_items(audit)  # a mapping field also as field.key columns, the names a multi-class profile uses
    assert flat.loc[0, "probabilities.lesion"] == 0.7 and flat.loc[0, "probabilities"] == {"normal": 0.3, "lesion": 0.7}


def test_monitor_check_and_report_on_served_traffic(service, fraud_bundle, fraud_data, tmp_path, capsys):  # noqa: F811
    import http.server
    import threading

    from conftest import free_port

    _, new = fraud_data
    rows = new.head(200)
    r = service.post("/v1/finance/predict", json={"transactions": json.loads(rows.to_json(orient="records",
                                                                                       date_format="iso"))})
    rid = r.headers["x-request-id"]
    service.post("/v1/finance/feedback", json={"outcomes": [
        {"request_id": rid, "item": i, "label": str(int(rows["label"].iloc[i]))} for i in range(200)]})

    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    common = ["--model", str(fraud_bundle), "--db-url", service.url]
    try:
        capsys.readouterr()
        assert main(["monitor", "check", "finance", *common, "--min", "roc_auc=0.2"]) == 0
        assert capsys.readouterr().out.strip().endswith("finance: ok")
        assert main(["monitor", "check", "finance", *common, "--min", "roc_auc=0.999",
                     "--webhook", f"http://127.0.0.1:{port}/hook"]) == 1
        out = capsys.readouterr().out
        assert "roc_auc" in out and "< 0.999" in out and "200 labelled predictions" in out
        assert received and received[-1]["status"] == "alert" and received[-1]["domain"] == "finance"
        assert any("roc_auc" in reason for reason in received[-1]["reasons"])
        assert main(["monitor", "check", "finance", *common, "--min", "roc_auc"]) == 2
    finally:
        server.shutdown()
    out = tmp_path / "finance.html"
    assert main(["monitor", "report", "finance", *common, "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count("<img") >= 2 and "Prediction drift" in page and "Live performance per week" in page
    assert "score" in page and "http" not in page.split("<body>")[1].split("Served bundle")[0]  # no external files


@pytest.mark.browser
def test_the_html_report_renders_in_chromium_without_errors(service, fraud_bundle, fraud_data, browser, tmp_path):  # noqa: F811
    _, new = fraud_data
    rows = new.head(120)
    r = service.post("/v1/finance/predict", json={"transactions": json.loads(rows.to_json(orient="records",
                                                                                       date_format="iso"))})
    service.post("/v1/finance/feedback", json={"outcomes": [
        {"request_id": r.headers["x-request-id"], "item": i, "label": str(int(rows["label"].iloc[i]))}
        for i in range(120)]})
    out = tmp_path / "report.html"
    assert main(["monitor", "report", "finance", "--model", str(fraud_bundle), "--db-url", service.url,
                 "--out", str(out)]) == 0
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(out.as_uri())
    assert page.locator("h1").inner_text().startswith("finance")
    images = page.locator("img")
    assert images.count() >= 3
    assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 100") for i in range(images.count()))
    assert page.locator("table").count() >= 3 and errors == []
    page.close()


def test_sampled_served_inputs_give_input_drift(fraud_bundle, demo_bundle, fraud_data, tmp_path, capsys):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'service.db'}"
    store = Store.open(url)
    app = create_app({"finance": str(fraud_bundle), "support": str(demo_bundle)},
                     config=ServeConfig(watch_s=0, auth=False, monitor_sample=1.0), load_now=True, store=store)
    _, new = fraud_data
    records = json.loads(new.head(300).to_json(orient="records", date_format="iso"))
    with TestClient(app) as client:
        # one table right after the training data: its features see its own rows after the bundle's history
        # (consecutive requests do not see each other — the online path for a stream is score_one; the same table
        # sent three times would triple every value, which no stream does)
        assert client.post("/v1/finance/predict", json={"transactions": records}).status_code == 200
        r = client.post("/v1/support/predict", json={"questions": ["my card was stolen", "how do I order a card"]})
        assert r.status_code == 200
        deadline = time.time() + 60
        while store.monitor_window("finance")[4] < 1 or store.monitor_window("support")[4] < 1:
            assert time.time() < deadline, "the monitoring samples were not stored"
            time.sleep(0.2)
    features, scores, embeddings, unreadable, requests = store.monitor_window("finance")
    assert requests == 1 and len(features) == 300 and "amount" in features and len(scores["score"]) == 300
    assert embeddings is None and unreadable == 0
    _, support_scores, support_embeddings, _, _ = store.monitor_window("support")
    assert support_embeddings.shape[0] == 2 and set(support_scores) == {"confidence", "handoff"}
    assert "question" not in store.monitor_window("support")[0]  # no customer text is kept

    common = ["--model", str(fraud_bundle), "--db-url", url, "--max-error-rate", "1"]
    capsys.readouterr()
    assert main(["monitor", "check", "finance", *common]) == 0  # the served inputs look like the reference
    with TestClient(app) as client:
        moved = [{**r, "amount": r["amount"] * 5} for r in records]
        client.post("/v1/finance/predict", json={"transactions": moved})
        deadline = time.time() + 60
        while store.monitor_window("finance")[4] < 2:
            assert time.time() < deadline
            time.sleep(0.2)
    assert main(["monitor", "check", "finance", *common]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("input drift: amount") for line in out.splitlines()), out


def test_stored_monitor_samples_read_back_column_by_column(tmp_path):
    from lepton_apps.predictor import MonitorWindow

    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    a = pd.DataFrame({"amount": [1.0, np.nan, 3.0], "mcc": ["x", "y", None]})
    b = pd.DataFrame({"amount": [4.0], "hour": [12.0]})  # a column the first sample lacks, one it does not have
    store.add_monitor_sample("finance", "r1", "v1", MonitorWindow(features=a, scores=np.array([0.1, 0.2, 0.3])))
    store.add_monitor_sample("finance", "r2", "v1", MonitorWindow(features=b, scores=np.array([0.9]), unreadable=2))
    with store.engine.begin() as conn:  # a sample written in the first format (one record per item) still reads
        conn.execute(store.t.monitor_samples.insert().values(
            request_id="r0", domain="finance", model_version="v1", created_at=dt.datetime(2020, 1, 1), n_items=1,
            payload=json.dumps({"features": [{"amount": 7.0, "mcc": "z"}], "scores": {"score": [0.5]},
                                "unreadable": 0})))
    features, scores, embeddings, unreadable, requests = store.monitor_window("finance")
    assert requests == 3 and unreadable == 2 and embeddings is None
    assert features["amount"].tolist()[:1] == [7.0] and features["amount"].iloc[2] != features["amount"].iloc[2]
    assert features["amount"].dtype == float and features["amount"].tolist()[3:] == [3.0, 4.0]
    assert features["mcc"].tolist()[:3] == ["z", "x", "y"] and features["mcc"].iloc[3:].isna().all()
    assert features["hour"].isna().sum() == 4 and features["hour"].iloc[4] == 12.0
    assert scores["score"].tolist() == [0.5, 0.1, 0.2, 0.3, 0.9]
