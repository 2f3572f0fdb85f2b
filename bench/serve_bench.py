"""Serving benchmark: the full service against a minimal FastAPI handler, single requests and micro-batching.

For each domain it starts three servers in turn (uvicorn, a process of its own, 127.0.0.1):

* ``minimal``: a bare FastAPI app whose handler parses the JSON with the domain's request schema
  and calls ``predictor.predict`` directly — no limits, metrics, timeouts or batching;
* ``service``: ``lepton_apps.serve.app.create_app`` with API keys, the SQLite audit log (a row written
  per request before it is answered), metrics and limits, micro-batching off;
* ``batched``: the same with micro-batching on (``--max-batch``, ``--max-wait-ms``);

and drives each with (1) ``--single`` sequential one-item requests (p50 / p99 latency) and (2)
``--requests`` one-item requests from ``--clients`` concurrent clients (requests/s, p50 / p99).
Goals (issue 11): the service's sequential p50 within 1.3x the minimal handler's; micro-batching at
least 2x the unbatched service's concurrent throughput for medical and support. First, the audit log's
write cost per request is measured on SQLite and on a throw-away PostgreSQL (``--audit-rows``).

    .venv/bin/python bench/serve_bench.py [--domains support,medical,finance] [--clients 16] [--requests 400]
    .venv/bin/python bench/serve_bench.py --domains "" --audit-rows 1000     # the audit cost alone
    .venv/bin/python bench/serve_bench.py --domains support --pin 0:1   # server on CPU 0, load generator on CPU 1

``--pin SERVER:CLIENT`` (comma-separated CPU ids each side) pins every server process (and its model's
threads: ``OMP_NUM_THREADS``) away from the load generator, so that the generator's own Python work does
not take the server's cores; without it both share all cores.

The models are built fresh in a temporary folder: the support demo KB (real MiniLM), a medical
demo model (EfficientNet-Lite0, 64 px, 1 epoch) and a fraud model on simulated transactions.
"""
import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODES = ("minimal", "service", "batched")


def say(text: str) -> None:
    print(f"[serve_bench] {text}", file=sys.stderr, flush=True)


def build_models(work: Path, domains: list[str]) -> dict[str, tuple[str, list[dict]]]:
    """Return {domain: (bundle path, request bodies with one item each)}."""
    out = {}
    if "support" in domains:
        from lepton_apps.support.demo import demo_config
        from lepton_apps.support.training import build, write_bundle

        cfg = demo_config(work / "support")
        assistant, record = build(cfg)
        bundle = write_bundle(assistant, record, work / "support" / "bundle")
        qs = [q["question"] for q in json.loads(Path(cfg.questions).read_text())["records"]]
        out["support"] = (str(bundle), [{"questions": [q]} for q in qs])
    if "medical" in domains:
        from lepton_apps.medical import train
        from lepton_apps.medical.demo import write_demo_data

        data = write_demo_data(work / "medical" / "data", n=120, size=64, seed=0)
        bundle = train({"data": str(data / "manifest.csv"), "out": str(work / "medical" / "bundle"), "image_size": 64,
                        "epochs": 1, "progress": False, "n_boot": 20})
        images = [base64.b64encode(p.read_bytes()).decode() for p in sorted(data.rglob("*.png"))[:64]]
        out["medical"] = (str(bundle), [{"images": [{"data_base64": im}]} for im in images])
    if "finance" in domains:
        import pandas as pd

        from lepton_apps.finance import FraudConfig, train
        from lepton_apps.finance.demo import simulate_transactions

        df = simulate_transactions(300, 600, 50, seed=0)
        cut = df["timestamp"].min().normalize() + pd.Timedelta(days=45)
        bundle = train(FraudConfig(data="simulated", out=str(work / "finance" / "bundle"), test_days=5),
                       frame=df[df.timestamp < cut].reset_index(drop=True))
        recs = json.loads(df[df.timestamp >= cut].head(400).to_json(orient="records", date_format="iso"))
        out["finance"] = (str(bundle), [{"transactions": [r]} for r in recs])
    return out


def minimal_app(domain: str, bundle: str):
    """A bare FastAPI app: schema parse + predictor.predict, nothing else."""
    from fastapi import FastAPI, Request

    from lepton_apps.predictor import load

    model = load(bundle, domain=domain)
    app = FastAPI()

    @app.get("/readyz")
    def ready():
        return {"ready": True}

    @app.post(f"/v1/{domain}/predict")
    async def predict(request: Request):
        req = model.request_schema.model_validate(json.loads(await request.body()))
        items, kwargs = req.to_items()
        results = model.predict(items, **kwargs) if kwargs else model.predict(items)
        return {"model_version": model.model_version, "results": [r.to_dict() for r in results]}

    return app


def serve(mode: str, domain: str, bundle: str, port: int, max_batch: int, max_wait_ms: float, db: str) -> None:
    """Run one server (called in a child process); the service with API keys and the SQLite audit log ``db``."""
    import uvicorn

    from lepton_apps.serve.app import ServeConfig, create_app
    from lepton_apps.store import Store

    if mode == "minimal":
        app = minimal_app(domain, bundle)
    else:
        app = create_app({domain: bundle}, config=ServeConfig(batching=mode == "batched", max_batch=max_batch,
                                                              max_wait_ms=max_wait_ms, watch_s=0),
                         load_now=True, store=Store.open(db))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def drive(url: str, bodies: list[dict], n: int, clients: int, token: str = "") -> dict:
    """Send ``n`` requests from ``clients`` concurrent clients; return requests/s, p50 and p99 (ms)."""
    import httpx

    latencies: list[float] = []
    counter = iter(range(n))
    failures = 0

    async def worker(client):
        nonlocal failures
        for i in counter:
            t = time.perf_counter()
            r = await client.post(url, json=bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - t)
            failures += r.status_code != 200

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits, headers={"authorization": f"Bearer {token}"}) as client:
        start = time.perf_counter()
        await asyncio.gather(*[worker(client) for _ in range(clients)])
        wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {"requests_per_s": n / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "failures": failures}


def parse_pin(pin: str | None) -> tuple[set[int], set[int]] | None:
    """Return (server CPUs, load-generator CPUs) from ``SERVER:CLIENT`` (e.g. ``0:1`` or ``0,1:2,3``), or None."""
    if not pin:
        return None
    server, _, client = pin.partition(":")
    cpus = ({int(c) for c in server.split(",")}, {int(c) for c in client.split(",")})
    have = os.sched_getaffinity(0)
    if not all(cpus) or not (cpus[0] | cpus[1]) <= have:
        raise SystemExit(f"--pin {pin}: give SERVER:CLIENT CPU ids from this machine's {sorted(have)}")
    return cpus


def measure(domain: str, bundle: str, bodies: list[dict], mode: str, args, db: str, token: str) -> dict:
    import urllib.request

    port = free_port()
    pin = parse_pin(args.pin)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if pin:
        env["OMP_NUM_THREADS"] = str(len(pin[0]))
    proc = subprocess.Popen([sys.executable, __file__, "--_serve", mode, domain, bundle, str(port),
                             str(args.max_batch), str(args.max_wait_ms), db], env=env,
                            preexec_fn=(lambda: os.sched_setaffinity(0, pin[0])) if pin else None)
    mine = os.sched_getaffinity(0)
    if pin:
        os.sched_setaffinity(0, pin[1])
    try:
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{mode} server for {domain} did not start")
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/v1/{domain}/predict"
        asyncio.run(drive(url, bodies, 20, 1, token))  # warm-up
        single = asyncio.run(drive(url, bodies, args.single, 1, token))
        loaded = asyncio.run(drive(url, bodies, args.requests, args.clients, token))
    finally:
        os.sched_setaffinity(0, mine)
        proc.terminate()
        proc.wait(timeout=30)
    return {"domain": domain, "mode": mode, "pin": args.pin or "", "single_p50_ms": single["p50_ms"], "single_p99_ms": single["p99_ms"],
            "concurrent_requests_per_s": loaded["requests_per_s"], "concurrent_p50_ms": loaded["p50_ms"],
            "concurrent_p99_ms": loaded["p99_ms"], "failures": single["failures"] + loaded["failures"]}


def audit_cost(work: Path, rows: int, threads: int) -> list[dict]:
    """Return the audit-log write cost per request on SQLite (WAL, a file under ``work``) and on PostgreSQL (a
    throw-away local cluster with the default durability, fsync on): sequential single-row writes as the
    service does them (p50 / p99 ms) and ``threads`` concurrent writers (rows/s)."""
    import datetime as dt
    import threading
    import uuid

    from lepton_apps.devservers import PostgresServer, pg_binary
    from lepton_apps.store import AuditRow, Store

    def row():
        return AuditRow(request_id=uuid.uuid4().hex, created_at=dt.datetime.utcnow(), domain="support",
                        endpoint="predict", model_ref="support:production", model_version="bundle@0123456789ab",
                        key_id="k" * 16, status=200, latency_ms=12.5, n_items=1, input_digest="d" * 64,
                        result=[{"faq_id": "lost-card", "confidence": 0.93, "handoff": False}])

    backends = [("SQLite (WAL)", f"sqlite:///{work / 'audit.db'}", None)]
    if pg_binary("initdb"):
        pg = PostgresServer(Path(tempfile.mkdtemp(prefix="lepton-pg-")))  # its own folder: the postgres user owns it
        pg.create()
        backends.append(("PostgreSQL (fsync on)", pg.url, pg))
    else:
        say("PostgreSQL is not installed: its audit cost is not measured")
    out = []
    try:
        for name, url, _ in backends:
            store = Store.open(url)
            for _ in range(20):  # warm the connection pool
                store.audit([row()])
            times = []
            for _ in range(rows):
                r = row()
                t0 = time.perf_counter()
                store.audit([r])
                times.append(time.perf_counter() - t0)
            per = rows // threads

            def writer():
                for _ in range(per):
                    store.audit([row()])
            pool = [threading.Thread(target=writer) for _ in range(threads)]
            t0 = time.perf_counter()
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            wall = time.perf_counter() - t0
            out.append({"backend": name, "single_p50_ms": float(np.percentile(times, 50) * 1000),
                        "single_p99_ms": float(np.percentile(times, 99) * 1000),
                        "concurrent_rows_per_s": per * threads / wall, "threads": threads})
            say(json.dumps(out[-1]))
            store.engine.dispose()
    finally:
        for _, _, server in backends:
            if server is not None:
                server.stop()
                shutil.rmtree(server.folder, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_serve":
        mode, domain, bundle, port, max_batch, max_wait, db = argv[1:8]
        serve(mode, domain, bundle, int(port), int(max_batch), float(max_wait), db)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", default="support,medical,finance")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=400, help="requests in the concurrent run, per server")
    ap.add_argument("--single", type=int, default=100, help="sequential requests, per server")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--audit-rows", type=int, default=500, help="audit rows written per database (0: skip)")
    ap.add_argument("--pin", default=None, metavar="SERVER:CLIENT",
                    help="CPU ids for the servers and for the load generator, e.g. 0:1 (default: both share all)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    parse_pin(args.pin)
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    rows, audit = [], []
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        if args.audit_rows:
            say("audit-log write cost …")
            audit = audit_cost(Path(tmp), args.audit_rows, args.clients)
        if domains:
            say("building the models …")
        models = build_models(Path(tmp), domains)
        from lepton_apps.store import Store

        db = f"sqlite:///{Path(tmp) / 'service.db'}"
        _, token = Store.open(db).create_key("bench", ["*"])
        for domain in domains:
            bundle, bodies = models[domain]
            for mode in MODES:
                row = measure(domain, bundle, bodies, mode, args, db, token)
                if row["failures"]:
                    raise RuntimeError(f"{row['failures']} requests failed: {row}")
                say(json.dumps(row))
                rows.append(row)
    if rows:
        print("| domain | server | single p50 ms | single p99 ms | concurrent req/s | concurrent p50 ms | "
              "concurrent p99 ms |")
        print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['domain']} | {r['mode']} | {r['single_p50_ms']:.1f} | {r['single_p99_ms']:.1f} | "
              f"{r['concurrent_requests_per_s']:.1f} | {r['concurrent_p50_ms']:.1f} | {r['concurrent_p99_ms']:.1f} |")
    by = {(r["domain"], r["mode"]): r for r in rows}
    for d in domains:
        overhead = by[(d, "service")]["single_p50_ms"] / by[(d, "minimal")]["single_p50_ms"]
        gain = by[(d, "batched")]["concurrent_requests_per_s"] / by[(d, "service")]["concurrent_requests_per_s"]
        print(f"{d}: service / minimal single p50 = {overhead:.2f}x (goal <= 1.3); "
              f"batched / unbatched concurrent throughput = {gain:.2f}x (goal >= 2 for medical, support)")
    if audit:
        print("\n| audit database | one row p50 ms | one row p99 ms | rows/s from %d threads |" % args.clients)
        print("|---|---|---|---|")
        for a in audit:
            print(f"| {a['backend']} | {a['single_p50_ms']:.2f} | {a['single_p99_ms']:.2f} | "
                  f"{a['concurrent_rows_per_s']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"servers": rows, "audit": audit}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
