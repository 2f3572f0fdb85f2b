"""``lepton-apps serve --engine ray``: the same FastAPI application in N Ray Serve replicas.

:func:`run` starts a local Ray instance (this machine only, no dashboard, bounded CPUs and object
store), deploys :class:`LeptonReplica` with ``num_replicas`` copies behind Ray Serve's HTTP proxy on
``host:port``, and shuts everything down on SIGINT / SIGTERM. Each replica builds its app with
:func:`lepton_apps.serve.app.create_app` and loads its models before Ray routes requests to it, so
every endpoint, key check, audit row and limit is the one ``--engine uvicorn`` serves.

What differs with several replicas:

* each response carries ``x-lepton-replica`` (the Ray Serve replica that answered it) and one
  ``x-request-id``, the service's own that names the audit row (Ray's proxy would append its own);
* ``GET /metrics`` adds up every replica's counters and histograms (prometheus_client's
  multiprocess mode over a folder the replicas share), so a scrape never depends on which replica
  answers it;
* ``POST /v1/admin/reload`` would swap only the replica that receives it, so it is refused (409):
  promote the alias instead and every replica's alias watcher swaps the bundle in;
* keys and audit rows go to one database, opened by every replica: the SQLite file under $LEPTON_HOME
  (WAL, fine for the replicas of one host), or PostgreSQL (``--db-url``) when services on several
  hosts share keys and audit log;
* finance's ``score_one`` history lives in each replica unless ``ServeConfig.state_url`` names a Redis
  they share.

Ray runs on this machine only (``address="local"``: never a cluster someone else started), on
127.0.0.1, with ``replicas`` logical CPUs (one per replica), no dashboard UI and no usage report.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable

from lepton_apps.errors import ConfigError, DependencyError

ENGINES = ("uvicorn", "ray")
APP_NAME = "lepton"
REPLICA_HEADER = "x-lepton-replica"
FEATURE = "lepton-apps serve --engine ray"
MIN_RAY = (2, 60)  # the oldest Ray this was tested with
PIP_EXTRA = "'lepton-apps[ray]'"
OBJECT_STORE_BYTES = 128 * 1024 * 1024  # the app passes no large objects between Ray tasks


def check_engine(engine: str, replicas: int) -> None:
    """Raise ConfigError for an unknown engine or a replica count it cannot run; return None otherwise."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown serving engine {engine!r}", where="--engine",
                          fix=f"use one of: {', '.join(ENGINES)}")
    if replicas < 1:
        raise ConfigError(f"--replicas must be at least 1, got {replicas}", where="--replicas",
                          fix="pass --replicas 1 or more")
    if engine == "uvicorn" and replicas != 1:
        raise ConfigError(f"--replicas {replicas} needs --engine ray (uvicorn runs one process)", where="--replicas",
                          fix="add --engine ray, or run several 'lepton-apps serve' processes behind a load balancer")


def require_ray_serve():
    """Return the ``ray.serve`` module; DependencyError naming the pip command when Ray Serve is missing, cannot be
    imported (``ray`` without its ``serve`` extras) or is older than :data:`MIN_RAY`."""
    import importlib

    try:
        ray, serve = importlib.import_module("ray"), importlib.import_module("ray.serve")
    except ImportError as exc:
        raise DependencyError(f"{FEATURE} needs Ray Serve (ray[serve] {_dotted(MIN_RAY)} or newer), which cannot be "
                              f"imported ({exc})", fix=f"pip install {PIP_EXTRA}") from exc
    found = tuple(int(p) for p in re.findall(r"\d+", ray.__version__)[:2])
    if found < MIN_RAY:  # the replicas build their app with serve.ingress()'s late-bound __serve_build_asgi_app__
        raise DependencyError(f"{FEATURE} needs ray[serve] {_dotted(MIN_RAY)} or newer, found ray {ray.__version__}",
                              fix=f"pip install -U {PIP_EXTRA}")
    return serve


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


class LeptonReplica:
    """One Ray Serve replica: its FastAPI app is :func:`create_app` over the shared database, built (models
    loaded) when Ray starts the replica. Decorated with ``serve.ingress`` by :func:`build_application`, so
    importing this module needs no Ray."""

    def __init__(self, refs: dict[str, str], home: str | None, device: str, config: dict, db_url: str,
                 replicas: int):
        self.refs, self.home, self.device = refs, home, device
        self.config, self.db_url, self.replicas = config, db_url, replicas

    def __serve_build_asgi_app__(self):
        """Return this replica's app: models loaded, identified by ``x-lepton-replica`` on every response."""
        from ray import serve

        from lepton_apps.store import Store

        from .app import ServeConfig, create_app

        app = create_app(self.refs, home=self.home, device=self.device, config=ServeConfig(**self.config),
                         load_now=True, store=Store.open(self.db_url))
        try:
            replica = serve.get_replica_context().replica_id.unique_id
        except Exception:  # noqa: BLE001 - outside a replica (never in `lepton-apps serve`): the process id
            replica = f"pid{os.getpid()}"
        app.add_middleware(ReplicaMiddleware, replica=replica, replicas=self.replicas)
        return app


class ReplicaMiddleware:
    """ASGI middleware of a replica: names the replica in a response header, answers ``GET /metrics`` for all
    replicas together (when ``PROMETHEUS_MULTIPROC_DIR`` is set), and refuses a reload that would reach only
    this replica of several."""

    def __init__(self, app, replica: str, replicas: int):
        self.app, self.replica, self.replicas = app, replica, replicas

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        tag = (REPLICA_HEADER.encode(), self.replica.encode())

        async def tagged(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), tag]}
            await send(message)

        path, method = scope.get("path", ""), scope.get("method", "")
        if path == "/v1/admin/reload" and self.replicas > 1:
            return await _answer(tagged, 409, "application/json", json.dumps({
                "detail": f"a reload would swap the model in only the one of {self.replicas} Ray Serve replicas "
                          "that receives it",
                "fix": "promote the bundle ('lepton-apps models promote NAME ALIAS'): every replica's alias watcher "
                       "swaps it in within --watch-s seconds; or restart the service"}).encode())
        if path == "/metrics" and method == "GET" and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            body, content_type = _all_replicas_metrics()
            return await _answer(tagged, 200, content_type, body)
        await self.app(scope, receive, tagged)


class OneRequestId:
    """ASGI middleware of Ray Serve's HTTP proxy (see :func:`proxy_middlewares`): keeps the first ``x-request-id`` of
    a response, the service's own that names its audit row, and drops the one Ray's proxy appends after it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def first_id_only(message):
            if message["type"] == "http.response.start":
                headers, seen = [], False
                for name, value in message.get("headers", []):
                    if name.lower() == b"x-request-id":
                        if seen:
                            continue
                        seen = True
                    headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, first_id_only)


def proxy_middlewares() -> list:
    """Return the middlewares of Ray Serve's HTTP proxy (named by RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH)."""
    from starlette.middleware import Middleware

    return [Middleware(OneRequestId)]


async def _answer(send, status: int, content_type: str, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _all_replicas_metrics() -> tuple[bytes, str]:
    """Return (every replica's service metrics added up, in Prometheus text format, its content type)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def build_application(serve, *, refs: dict[str, str], home: str | Path | None, device: str, config,
                      db_url: str, replicas: int, num_gpus: float, metrics_dir: str | None):
    """Return the Ray Serve application (deployment bound to its arguments) of ``replicas`` LeptonReplicas."""
    env = {"PROMETHEUS_MULTIPROC_DIR": metrics_dir} if metrics_dir else {}
    ingress = serve.ingress()(LeptonReplica)
    deployment = serve.deployment(
        ingress, name="LeptonReplica", num_replicas=replicas,
        # a micro-batch can only fill with requests the replica is allowed to hold at once
        max_ongoing_requests=max(8, config.max_batch),
        ray_actor_options={"num_cpus": 1, "num_gpus": num_gpus, "runtime_env": {"env_vars": env}},
        graceful_shutdown_timeout_s=max(5.0, config.timeout_s), health_check_period_s=5,
    )
    return deployment.bind(dict(refs), None if home is None else str(home), device, dataclasses.asdict(config),
                           db_url, replicas)


def run(refs: dict[str, str], *, home: str | Path | None, device: str, config, db_url: str, host: str, port: int,
        replicas: int, echo: Callable[[str], None] = print) -> None:
    """Serve ``refs`` in ``replicas`` Ray Serve replicas on http://host:port until SIGINT / SIGTERM; return None
    once Serve and the local Ray instance are shut down. Raises DependencyError without ``ray[serve]``,
    ConfigError for ``device='cuda'`` on a machine without a GPU, RuntimeError when the replicas fail to start."""
    check_engine("ray", replicas)
    serve = require_ray_serve()
    import ray
    from ray.serve.config import HTTPOptions, ProxyLocation
    from ray.serve.schema import LoggingConfig

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline first: no usage report leaves the machine
    # read by the proxy actor, which inherits this environment through the Ray instance started below
    os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", f"{__name__}.proxy_middlewares")
    quiet = LoggingConfig(log_level="WARNING", enable_access_log=False)
    metrics_dir = tempfile.mkdtemp(prefix="lepton-ray-metrics-")
    stop, started = threading.Event(), threading.Event()
    handlers = {}

    def on_signal(signum, frame):
        stop.set()
        if not started.is_set():  # still starting: abandon the start, then clean up below
            raise KeyboardInterrupt

    try:
        # address="local": always a new instance of our own, never a cluster someone else started
        info = ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=replicas, include_dashboard=False,
                        object_store_memory=OBJECT_STORE_BYTES, logging_level="WARNING", log_to_driver=True)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # not Serve's start-up chatter
        for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which sets its own SIGTERM handler
            handlers[sig] = signal.signal(sig, on_signal)
        gpus = ray.cluster_resources().get("GPU", 0)
        if device == "cuda" and not gpus:
            raise ConfigError("--device cuda, but Ray finds no GPU on this machine", where="--device",
                              fix="use --device cpu (or auto), or check nvidia-smi")
        num_gpus = gpus / replicas if device != "cpu" and gpus else 0  # Ray hides GPUs from actors that ask for none
        echo(f"ray: local instance with {replicas} CPU slot(s), {gpus:g} GPU(s); logs in "
             f"{info.address_info.get('session_dir', 'the Ray temp folder')}")
        serve.start(proxy_location=ProxyLocation.HeadOnly, http_options=HTTPOptions(host=host, port=port),
                    logging_config=quiet)
        application = build_application(serve, refs=refs, home=home, device=device, config=config, db_url=db_url,
                                        replicas=replicas, num_gpus=num_gpus, metrics_dir=metrics_dir)
        serve.run(application, name=APP_NAME, route_prefix="/", logging_config=quiet)  # returns once all are up
        started.set()
        echo(f"{replicas} Ray Serve replica(s) ready on http://{host}:{port} (Ctrl+C to stop)")
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if ray.is_initialized():
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        shutil.rmtree(metrics_dir, ignore_errors=True)
