"""`lepton-apps serve --engine ray`: the clear errors (no Ray Serve, old Ray, unknown engine, bad replica count),
and a real two-replica service started with the command: both replicas answer, every 200 is audited exactly
once under the request id the client got, metrics add up over the replicas, and no Ray process outlives it."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from conftest import free_port  # noqa: E402
from lepton_apps.cli import main  # noqa: E402
from lepton_apps.serve.ray_engine import REPLICA_HEADER  # noqa: E402
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: E402,F401 - fixtures

N_REQUESTS = 40


def test_without_ray_serve_the_error_names_the_pip_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray.serve", None)  # as if ray[serve] were not installed
    assert main(["serve", "--engine", "ray", "--replicas", "2"]) == 2
    err = capsys.readouterr().err
    assert "missing dependency" in err and "needs Ray Serve" in err and "pip install 'lepton-apps[ray]'" in err


def test_a_ray_older_than_the_tested_one_is_refused(monkeypatch):
    import ray

    from lepton_apps.errors import DependencyError
    from lepton_apps.serve.ray_engine import require_ray_serve

    assert require_ray_serve().__name__ == "ray.serve"
    monkeypatch.setattr(ray, "__version__", "2.41.0")
    with pytest.raises(DependencyError, match=r"needs ray\[serve\] 2.60 or newer, found ray 2.41.0") as info:
        require_ray_serve()
    assert "pip install -U 'lepton-apps[ray]'" in str(info.value)


@pytest.mark.parametrize("args, message", [
    (["--engine", "gunicorn"], "unknown serving engine 'gunicorn' (in --engine). Fix: use one of: uvicorn, ray"),
    (["--engine", "ray", "--replicas", "0"], "--replicas must be at least 1, got 0"),
    (["--replicas", "3"], "--replicas 3 needs --engine ray"),
])
def test_unknown_engine_and_bad_replica_counts_are_clear_errors(args, message, capsys):
    assert main(["serve", *args]) == 2
    assert message in capsys.readouterr().err


def _descendants(pid: int) -> dict[int, str]:
    """Return {pid: start time} of every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        child = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(child)
        started[child] = fields[19]
    out, todo = {}, list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out[p] = started[p]
        todo.extend(children.get(p, []))
    return out


def _alive(processes: dict[int, str]) -> list[int]:
    """Return the pids of ``processes`` still running (the same process: same start time, not a zombie)."""
    alive = []
    for pid, start in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[19] == start and fields[0] != "Z":
            alive.append(pid)
    return alive


@pytest.mark.slow
def test_two_ray_serve_replicas_share_keys_audit_and_metrics_and_leave_no_process(
        fraud_bundle, fraud_data, tmp_path, capsys):  # noqa: F811
    import httpx

    from lepton_apps.store import Store

    assert main(["keys", "create", "ray-client", "--domains", "finance"]) == 0  # into $LEPTON_HOME/lepton.db
    token = capsys.readouterr().out.strip().splitlines()[-1]
    _, new = fraud_data
    records = json.loads(new.head(N_REQUESTS).to_json(orient="records", date_format="iso"))
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lepton_apps.cli", "serve", str(fraud_bundle), "--engine", "ray",
                                 "--replicas", "2", "--port", str(port), "--watch-s", "0"],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    ray_processes: dict[int, str] = {}
    try:
        with httpx.Client(base_url=base, timeout=30, headers={"authorization": f"Bearer {token}"}) as client:
            deadline = time.monotonic() + 120
            while True:  # the application answers /readyz once a replica has loaded its model
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                try:
                    ready = client.get("/readyz")
                    if ready.status_code == 200 and "replica(s) ready" in log.read_text():
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            version = ready.json()["models"]["finance"]
            ray_processes = _descendants(proc.pid)
            assert sum("ServeReplica" in Path(f"/proc/{p}/cmdline").read_text() for p in ray_processes) == 2

            def predict(record):
                r = client.post("/v1/finance/predict", json={"transactions": [record]})
                return r.status_code, r.json(), r.headers.get_list("x-request-id"), r.headers.get(REPLICA_HEADER)

            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(predict, records))
            assert [a[0] for a in answers] == [200] * N_REQUESTS
            assert {a[1]["model_version"] for a in answers} == {version}
            sent = [str(r["transaction_id"]) for r in records]
            assert [a[1]["results"][0]["transaction_id"] for a in answers] == sent
            assert all(len(a[2]) == 1 for a in answers)  # the service's id only, not Ray's as well
            replicas = {a[3] for a in answers}
            assert len(replicas) == 2 and None not in replicas  # both replicas answered

            refused = client.post("/v1/finance/predict", json={"transactions": records[:1]},
                                  headers={"authorization": ""})
            assert refused.status_code == 401 and "no API key" in refused.json()["detail"]
            reload = client.post("/v1/admin/reload", json={})
            assert reload.status_code == 409 and "models promote" in reload.json()["fix"]
            metrics = client.get("/metrics").text  # every replica's counters, whichever replica answers
            counted = re.findall(r'lepton_requests_total\{domain="finance",endpoint="predict",'
                                 r'model_version="[^"]+",status="(\d+)"\} (\S+)', metrics)
            assert {s: float(n) for s, n in counted} == {"200": N_REQUESTS, "401": 1}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            for pid in _alive(ray_processes):  # only if the service failed to stop them
                os.kill(pid, signal.SIGKILL)
    assert code == 0, log.read_text()[-3000:]
    deadline = time.monotonic() + 10
    while _alive(ray_processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(ray_processes) >= 6 and _alive(ray_processes) == []  # GCS, raylet, controller, proxy, 2 replicas…
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/healthz", timeout=2)

    audit = Store.open().audit_frame()
    ok = audit[(audit["endpoint"] == "predict") & (audit["status"] == 200)]
    answered = [a[2][0] for a in answers]
    assert sorted(ok["request_id"]) == sorted(answered)  # every 200 audited exactly once, under the client's id
    assert set(ok["model_version"]) == {version} and ok["key_id"].notna().all()
    assert audit[audit["status"] == 401]["domain"].tolist() == ["finance"]
