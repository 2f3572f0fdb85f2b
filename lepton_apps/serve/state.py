"""The served models behind the HTTP service: :class:`ServeConfig` (the limits, batching, access control and
audit of ``lepton-apps serve``) and ``ServedModels``, which loads each domain's bundle and its challenger, runs every
call of a model on that domain's own thread, swaps in a new bundle on reload once it has loaded, and follows a
registry alias that moved. It answers no HTTP request itself; :mod:`lepton_apps.serve.app` builds the
application around it.
"""
import asyncio
import concurrent.futures
import dataclasses
import functools
import threading
from pathlib import Path
from typing import Any

from .batching import MicroBatcher


@dataclasses.dataclass
class ServeConfig:
    """Limits, batching, access control and audit of the service (``lepton-apps serve`` options).

    ``auth``: model endpoints need an API key (``Authorization: Bearer <token>`` or ``X-API-Key``) whose
    domains include the one asked (401 without a valid key, 403 outside its domains).
    ``audit_required``: a prediction whose audit row cannot be written is answered 503, not 200.
    ``audit_free_text``: keep the customer's question text in support audit rows (off: digest only).
    """

    max_body_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 30.0
    max_batch: int = 64
    max_wait_ms: float = 5.0
    batching: bool = True
    auth: bool = True
    audit_required: bool = True
    audit_free_text: bool = False
    watch_s: float = 10.0  # how often registry names / aliases are re-resolved (0: never; reload by hand)
    challengers: dict[str, str] = dataclasses.field(default_factory=dict)  # {domain: ref} scored in shadow
    monitor_sample: float = 0.0  # share of predict requests whose monitoring window is stored (input drift)
    state_url: str | None = None  # Redis URL for finance's online state shared by replicas (None: in-process)
    state_prefix: str | None = None  # key prefix in Redis (default "lepton:finance:")
    backends: dict[str, str] = dataclasses.field(default_factory=dict)  # {domain: torch|onnx|int8|auto} (medical, support)


class ServedModels:
    """The models being served (with the bundle folder each was loaded from), their loading status,
    their batchers, and the swap to a new bundle (reload)."""

    def __init__(self, refs: dict[str, str], home: str | Path | None, device: str, config: "ServeConfig"):
        self.refs, self.home, self.device, self.config = dict(refs), home, device, config
        self.models: dict[str, Any] = {}
        self.paths: dict[str, Path] = {}
        self.errors: dict[str, str] = {}
        self.challengers: dict[str, Any] = {}  # scored in shadow: answers logged, never returned
        self.shadow_executors: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self.background: set[asyncio.Task] = set()  # shadow scoring and monitoring samples, after the answer
        self.monitor_executors = {d: concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                                           thread_name_prefix=f"lepton-{d}-monitor")
                                  for d in refs} if config.monitor_sample > 0 else {}
        self.batchers: dict[str, tuple[Any, MicroBatcher]] = {}
        # one thread per served domain runs every call of its model (predict, batches, explain, score_one):
        # the model is never used from two threads at once, and its BLAS/OpenMP pool is made once, not
        # per worker thread of a shared pool
        self.executors = {d: concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lepton-{d}")
                          for d in refs}
        self.reloading = threading.Lock()
        self.done = threading.Event()

    def _load(self, domain: str, ref: str, shared_state: bool = True):
        from lepton_apps.predictor import load, resolve

        path, _ = resolve(ref, home=self.home, domain=domain)
        model = load(path, home=self.home, device=self.device, domain=domain, backend=self.config.backends.get(domain))
        if domain == "finance" and self.config.state_url and shared_state:
            model.share_state(self.config.state_url, self.config.state_prefix)
        return model, Path(path).resolve()

    def state_error(self) -> str | None:
        """Return why finance's shared online state cannot be reached (None: it can, or it is in-process)."""
        model = self.models.get("finance")
        ping = getattr(getattr(model, "state", None), "ping", None)
        return ping() if ping else None

    def load_all(self) -> None:
        for domain, ref in self.refs.items():
            try:
                self.models[domain], self.paths[domain] = self._load(domain, ref)
            except Exception as exc:  # noqa: BLE001 - reported by /readyz, never crashes the process
                self.errors[domain] = f"{type(exc).__name__}: {exc}"
        for domain, ref in self.config.challengers.items():  # a challenger that fails to load is reported only
            try:
                self.challengers[domain], _ = self._load(domain, ref, shared_state=False)
                self.shadow_executors[domain] = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"lepton-{domain}-shadow")
            except Exception as exc:  # noqa: BLE001
                self.errors[f"{domain} (challenger)"] = f"{type(exc).__name__}: {exc}"
        self.done.set()

    def reload(self, domain: str, ref: str | None = None) -> dict[str, Any]:
        """Load ``ref`` (default: the served reference again, so a moved alias is followed) and swap it in
        once it has loaded and passed its checksums; requests already running finish on the old model.
        Returns {domain, ref, old_version, new_version, swapped}. Raises what loading raises (nothing swapped)."""
        with self.reloading:
            ref = ref or self.refs[domain]
            new, path = self._load(domain, ref)
            old = self.models.get(domain)
            self.models[domain], self.paths[domain], self.refs[domain] = new, path, ref
            self.errors.pop(domain, None)
            self.errors.pop(f"{domain} (reload)", None)
            return {"domain": domain, "ref": ref, "old_version": getattr(old, "model_version", None),
                    "new_version": new.model_version, "swapped": True}

    def moved(self) -> list[str]:
        """Return the served domains whose reference now resolves to another bundle folder (alias moved)."""
        from lepton_apps.predictor import resolve

        out = []
        for domain, ref in list(self.refs.items()):
            try:
                path, _ = resolve(ref, home=self.home, domain=domain)
            except Exception:  # noqa: BLE001 - a broken alias keeps the loaded model; /readyz still says ready
                continue
            if domain in self.paths and Path(path).resolve() != self.paths[domain]:
                out.append(domain)
        return out

    def watch(self, every_s: float, stop: threading.Event) -> None:
        """Follow moved aliases: every ``every_s`` seconds reload the domains whose reference points elsewhere."""
        while not stop.wait(every_s):
            for domain in self.moved():
                try:
                    self.reload(domain)
                except Exception as exc:  # noqa: BLE001 - the old model keeps serving
                    self.errors[f"{domain} (reload)"] = f"{type(exc).__name__}: {exc}"

    async def call(self, domain: str, fn, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on ``domain``'s model thread; return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executors[domain], functools.partial(fn, *args, **kwargs))

    def in_background(self, coroutine) -> None:
        """Run ``coroutine`` after the answer, keeping a reference until it ends (shutdown waits for it)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def ready(self) -> bool:
        """True when every served domain has a model (a failed reload is reported but the old model serves)."""
        return self.done.is_set() and set(self.models) == set(self.refs)
