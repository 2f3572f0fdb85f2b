"""The predictor contract every domain template implements, and one ``load`` for all of them.

After scikit-learn's estimators and Hugging Face pipelines: one way to load a trained model, one
way to predict, one row out per row in, typed JSON-serialisable results::

    from lepton_apps.predictor import load

    model = load("support:production")          # a bundle folder, a registry name or DOMAIN:ALIAS
    results = model.predict(["my card was stolen"])   # list[Result], one per item, in order
    results[0].to_dict()                        # JSON-ready; results[0].model_version, .error, .ok
    table = model.predict_frame(frame)          # one output row per input row, an ``error`` column
    model.explain(item).to_dict()               # why, as JSON-ready data

What a domain's predictor class guarantees (checked for every installed domain by
:func:`check_predictor`, the way scikit-learn's ``check_estimator`` checks estimators):

* ``Cls.load(ref, *, home=None, device="auto")`` returns a ready predictor; ``ref`` is resolved
  through the registry (:func:`resolve`) the same way in every domain;
* ``predict(items)`` takes a list and returns a list of the domain's :class:`Result` subclass of
  the same length and order; an item that cannot be used becomes a result whose ``error`` says why
  (never an exception, never a dropped item); every result carries ``model_version``;
* ``predict_frame(frame)`` returns one row per input row, in order, ending with an ``error``
  column, and a ``model_version`` column; it is the batch driver's scoring function;
* ``predict_file(source, output, ...)`` scores a file or folder through the core batch driver;
* ``explain(item)`` returns an object with ``to_dict()`` (JSON-serialisable) and ``model_version``;
* ``request_schema`` / ``response_schema``: the pydantic models of the HTTP API's request and
  response bodies; ``predict_request(request)`` answers one request body;
* ``monitor_window(data)`` returns a :class:`MonitorWindow` (features, scores, embeddings, unreadable
  count) that :mod:`lepton_apps.monitor` profiles and compares — the bundle's ``profile/`` is built
  from the validation data's window at training;
* ``evaluate(data, *, out=None, **options)`` measures the model on labelled data with the domain's own
  metrics and returns an :class:`Evaluation` (JSON-able metrics with ``model_version``, a summary, the
  report folder ``out`` holding ``report.json`` and plots); the domain's ``DomainSpec.evaluate`` declares
  its extra options, so the core writes the ``lepton-apps <domain> evaluate`` verb once for every domain.

The domain verbs (``score``, ``score_one``, ``answer``, ``answer_batch``) stay as aliases.
"""
from __future__ import annotations

import abc
import json
import math
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

from pydantic import BaseModel, ConfigDict

from .errors import BundleError, LeptonError

ERROR = "error"
MODEL_VERSION = "model_version"


class Result(BaseModel):
    """One item's result: the domain's fields plus ``model_version`` and ``error`` (None when scored)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)

    model_version: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the item was used and scored (``error`` is None)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-serialisable data (NaN becomes None)."""
        return _finite(self.model_dump(mode="json"))

    def for_audit(self, free_text: bool = False) -> dict[str, Any]:
        """Return what the audit log keeps of this result: :meth:`to_dict` without the fields in
        ``audit_private`` (raw input such as file names or free text) unless ``free_text``."""
        data = self.to_dict()
        if not free_text:
            for name in self.audit_private:
                data.pop(name, None)
        return data

    audit_private: ClassVar[tuple[str, ...]] = ()


class Explanation(BaseModel):
    """Why a model decided as it did, for one item; each domain adds its own fields."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model_version: str

    def to_dict(self) -> dict[str, Any]:
        """Return the explanation as plain JSON-serialisable data."""
        return _finite(self.model_dump(mode="json"))


class PredictRequest(BaseModel):
    """Base of a domain's API request body: :meth:`to_items` returns what ``predict`` takes."""

    model_config = ConfigDict(extra="forbid")

    def to_items(self) -> tuple[list[Any], dict[str, Any]]:
        """Return ``(items, keyword arguments)`` for the predictor's ``predict``."""
        raise NotImplementedError


class Evaluation(BaseModel):
    """What ``evaluate`` returns: the domain's metrics (JSON-able, with ``model_version``), a human summary
    (one or a few lines) and the folder the report and plots were written to (None: not written)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    metrics: dict[str, Any]
    summary: str
    folder: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the evaluation as strict JSON-ready data."""
        return {"metrics": _finite(self.metrics), "summary": self.summary,
                "folder": None if self.folder is None else str(self.folder)}


class MonitorWindow(BaseModel):
    """What a model sees and says for a set of inputs, in the form :mod:`lepton_apps.monitor` compares with a
    reference profile: ``features`` (a table, one row per readable input: finance's model features,
    medical's image statistics, support's question length / language), ``scores`` (the predictions'
    distribution: an array or ``{name: array}``), ``embeddings`` (medical's backbone features, support's
    question vectors; None for finance) and ``unreadable`` (inputs that could not be read at all).

    ``judged`` maps a feature or score name to the mask of the rows on which it can be judged fairly against the
    reference (finance: rows whose history and labels are complete); names not in it are judged on every row.
    ``not_judged`` says, per such name, why the other rows are left out, and ``judge_hint`` what the caller can pass
    so that every row is judged ("" when nothing would help)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    features: Any = None
    scores: Any = None
    embeddings: Any = None
    unreadable: int = 0
    judged: dict[str, Any] = {}
    not_judged: dict[str, str] = {}
    judge_hint: str = ""


class Predictor(abc.ABC):
    """A trained model of one domain, loaded from a bundle (see the module docstring for the contract)."""

    domain: ClassVar[str]
    result_type: ClassVar[type[Result]]
    request_schema: ClassVar[type[PredictRequest]]
    chunk_size: ClassVar[int] = 10_000  # rows per resumable chunk in predict_file
    model_version: str

    @classmethod
    @abc.abstractmethod
    def load(cls, ref: str | os.PathLike, *, home: str | os.PathLike | None = None, device: str = "auto") -> Predictor:
        """Return the predictor of a bundle folder, registry name or ``DOMAIN:ALIAS``."""

    @abc.abstractmethod
    def predict(self, items: Sequence[Any]) -> list[Result]:
        """Return one result per item, in order; unusable items get a result with ``error`` set."""

    @abc.abstractmethod
    def predict_frame(self, frame):
        """Return one row per row of ``frame`` (pandas), in order, with ``model_version`` and ``error`` columns."""

    @abc.abstractmethod
    def explain(self, item: Any) -> Explanation:
        """Return why the model decided as it did for ``item``."""

    @abc.abstractmethod
    def evaluate(self, data: Any = None, *, out: str | os.PathLike | None = None, **options: Any) -> Evaluation:
        """Return the model's metrics on labelled ``data`` (the domain's own metrics, at the bundle's operating
        point); with ``out`` also write ``report.json`` and the plots there."""

    @abc.abstractmethod
    def monitor_window(self, data: Any) -> MonitorWindow:
        """Return what the model sees and says for ``data`` (the input ``predict_file`` takes, or a table /
        list of items), for drift reports; training writes the validation data's as the bundle's reference
        profile (``profile/``)."""

    def predict_file(self, source: str | os.PathLike, output: str | os.PathLike, *, resume: bool = True,
                     progress: bool = True, chunk_size: int | None = None, **options: Any):
        """Score a table file through the core batch driver (:func:`lepton_apps.batch.run_batch`) with
        :meth:`predict_frame`; return its BatchResult. Domains override this where a row needs more
        than itself (fraud features need each entity's history) or the input is a folder of files."""
        from .batch import run_batch

        return run_batch(source, output, self.predict_frame, resume=resume, progress=progress,
                         chunk_size=chunk_size or self.chunk_size, **options)

    @classmethod
    def response_schema(cls) -> type[BaseModel]:
        """Return the pydantic model of the API response: ``{model_version, results: [result_type]}``."""
        return _response_model(cls.result_type)

    def predict_request(self, request: PredictRequest) -> BaseModel:
        """Answer one API request body: :meth:`predict` on its items, wrapped in :meth:`response_schema`."""
        items, kwargs = request.to_items()
        results = self.predict(items, **kwargs) if kwargs else self.predict(items)
        return self.response_schema()(model_version=self.model_version, results=results)


_RESPONSES: dict[type, type[BaseModel]] = {}


def _response_model(result_type: type[Result]) -> type[BaseModel]:
    from pydantic import create_model

    if result_type not in _RESPONSES:
        name = result_type.__name__ + "Response"
        _RESPONSES[result_type] = create_model(name, model_version=(str, ...), results=(list[result_type], ...))
    return _RESPONSES[result_type]


def _finite(value: Any) -> Any:
    """Return ``value`` with float NaN / inf replaced by None, recursively (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _close(a: Any, b: Any, tol: float = 1e-5) -> bool:
    """Return True when ``a`` and ``b`` are equal, floats within ``tol`` (batched maths may differ in the last bits)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    return a == b


# --------------------------------------------------------------------------- loading

def resolve(ref: str | os.PathLike, *, home: str | os.PathLike | None = None, domain: str | None = None) -> tuple[Path, str]:
    """Return ``(bundle folder, its domain)`` for a bundle folder, registry name or ``DOMAIN:ALIAS``.

    Reads only ``bundle.json``; the domain's ``load`` verifies the checksums. Raises BundleError
    for a folder that is not a bundle or belongs to another domain than ``domain``.
    """
    from .bundle import MANIFEST
    from .registry import Registry

    path = Registry(home).resolve(ref, domain=domain)
    manifest = Path(path) / MANIFEST
    try:
        found = json.loads(manifest.read_text(encoding="utf-8")).get("domain")
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {MANIFEST} ({exc})", where=str(path),
                          fix="pass a folder written by 'lepton-apps <domain> train', or a registry name "
                              "(see 'lepton-apps models list')") from None
    if domain is not None and found != domain:
        raise BundleError(f"this is a {found!r} bundle, not a {domain!r} one", where=str(path),
                          fix=f"pass a bundle trained by 'lepton-apps {domain} train'")
    return Path(path), str(found)


def predictor_class(domain: str) -> type[Predictor]:
    """Return the predictor class of an installed domain; LeptonError naming the installed ones otherwise."""
    from .domains import available_domains

    domains = available_domains()
    spec = domains.get(domain)
    cls = spec.predictor_class() if spec is not None else None
    if cls is None:
        have = ", ".join(n for n, s in domains.items() if s.predictor) or "none"
        raise LeptonError(f"no installed domain {domain!r} with a predictor", where="lepton_apps.predictor",
                          fix=f"domains with a predictor: {have}")
    return cls


def load(ref: str | os.PathLike, *, home: str | os.PathLike | None = None, device: str = "auto",
         domain: str | None = None, backend: str | None = None, export: str | os.PathLike | None = None) -> Predictor:
    """Return the predictor for a bundle folder, registry name or ``DOMAIN:ALIAS``, whatever its domain.

    ``backend`` / ``export``: how the model runs (torch, onnx, int8, auto; an export folder), for the domains
    whose ``load`` takes them (medical, support); ConfigError for another domain."""
    import inspect

    from lepton_apps.errors import ConfigError

    path, found = resolve(ref, home=home, domain=domain)
    cls = predictor_class(found)
    options = {k: v for k, v in (("backend", backend), ("export", export)) if v is not None}
    params = inspect.signature(cls.load).parameters
    for name in options:
        if name not in params:
            raise ConfigError(f"the {found} template has no --{name} option (its model is not exported to ONNX)",
                              where=f"--{name}", fix=f"leave --{name} out for {found} bundles")
    return cls.load(path, home=home, device=device, **options)


# --------------------------------------------------------------------------- the contract check

def check_predictor(predictor: Predictor, items: Sequence[Any], bad_item: Any, frame) -> list[str]:
    """Return the ways ``predictor`` breaks the contract (empty list: none), after the manner of
    scikit-learn's ``check_estimator``.

    ``items``: usable inputs; ``bad_item``: an input the model cannot use (must come back as an error
    result, not an exception); ``frame``: a batch-scoring input table (pandas) with at least 3 rows.
    """
    import inspect

    import pandas as pd

    problems: list[str] = []
    cls = type(predictor)
    if not isinstance(predictor, Predictor):
        return [f"{cls.__name__} is not a lepton_apps.predictor.Predictor"]
    params = inspect.signature(cls.load).parameters
    for name, default in (("home", None), ("device", "auto")):
        p = params.get(name)
        if p is None or p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default != default:
            problems.append(f"{cls.__name__}.load has no keyword-only {name}={default!r}")
    if not (isinstance(cls.result_type, type) and issubclass(cls.result_type, Result)):
        problems.append("result_type is not a Result subclass")
    if not (isinstance(getattr(cls, "request_schema", None), type) and issubclass(cls.request_schema, PredictRequest)):
        problems.append("request_schema is not a PredictRequest subclass")
    if not getattr(predictor, "model_version", ""):
        problems.append("model_version is empty")

    batch = [*items, bad_item]
    try:
        results = predictor.predict(batch)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return problems + [f"predict raised {type(exc).__name__} on a list with one bad item: {exc}"]
    if not isinstance(results, list) or len(results) != len(batch):
        problems.append(f"predict returned {type(results).__name__} of {len(results) if hasattr(results, '__len__') else '?'} "
                        f"for {len(batch)} items")
        return problems
    for i, r in enumerate(results):
        if not isinstance(r, cls.result_type):
            problems.append(f"result {i} is a {type(r).__name__}, not {cls.result_type.__name__}")
            continue
        if r.model_version != predictor.model_version:
            problems.append(f"result {i} has model_version {r.model_version!r}, not {predictor.model_version!r}")
        try:
            json.dumps(r.to_dict(), allow_nan=False)
        except (TypeError, ValueError) as exc:
            problems.append(f"result {i} is not strict JSON: {exc}")
    if any(not r.ok for r in results[:-1]):
        problems.append("a usable item came back with an error: "
                        + "; ".join(str(r.error) for r in results[:-1] if not r.ok))
    if results[-1].ok:
        problems.append("the bad item came back without an error")
    if not _close(predictor.predict(list(items)[:1])[0].to_dict(), results[0].to_dict()):
        problems.append("an item's result depends on the other items of the batch")

    out = predictor.predict_frame(frame)
    if not isinstance(out, pd.DataFrame) or len(out) != len(frame):
        problems.append(f"predict_frame returned {len(out) if hasattr(out, '__len__') else '?'} rows for {len(frame)}")
    else:
        if list(out.columns)[-1] != ERROR:
            problems.append(f"predict_frame's last column is {list(out.columns)[-1]!r}, not 'error'")
        if MODEL_VERSION not in out.columns or set(out[MODEL_VERSION].dropna()) - {predictor.model_version}:
            problems.append("predict_frame has no model_version column with the model's version")
    try:
        exp = predictor.explain(items[0])
        json.dumps(exp.to_dict(), allow_nan=False)
        if exp.model_version != predictor.model_version:
            problems.append("explain's model_version differs from the predictor's")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"explain failed: {type(exc).__name__}: {exc}")
    return problems


def check_evaluate(predictor: Predictor, spec, data: Any, out: str | os.PathLike) -> list[str]:
    """Return the ways ``predictor.evaluate`` breaks the contract (empty list: none): its keyword options match
    ``spec`` (the domain's :class:`~lepton_apps.domains.EvaluateSpec`: names and defaults), it returns an
    :class:`Evaluation` with strict-JSON metrics carrying the model's version and a summary, and with ``out`` it
    writes ``report.json`` holding those metrics."""
    import inspect

    problems: list[str] = []
    params = inspect.signature(type(predictor).evaluate).parameters
    if "out" not in params or params["out"].kind is not inspect.Parameter.KEYWORD_ONLY:
        problems.append("evaluate has no keyword-only out")
    for opt in spec.options:
        p = params.get(opt.name)
        if p is None or p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default != opt.default:
            problems.append(f"evaluate has no keyword-only {opt.name}={opt.default!r} (the DomainSpec's --{opt.name})")
    declared = {o.name for o in spec.options} | {"self", "data", "out"}
    extra = [n for n, p in params.items() if n not in declared and p.kind is not inspect.Parameter.VAR_KEYWORD]
    if extra:
        problems.append(f"evaluate takes {extra} that the DomainSpec does not declare (the CLI cannot pass them)")
    try:
        result = predictor.evaluate(data, out=out)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return problems + [f"evaluate raised {type(exc).__name__}: {exc}"]
    if not isinstance(result, Evaluation):
        return problems + [f"evaluate returned {type(result).__name__}, not Evaluation"]
    if result.metrics.get(MODEL_VERSION) != predictor.model_version:
        problems.append("evaluate's metrics do not carry the model's version")
    if not result.summary.strip():
        problems.append("evaluate's summary is empty")
    try:
        json.dumps(result.to_dict(), allow_nan=False)
    except (TypeError, ValueError) as exc:
        problems.append(f"evaluate's result is not strict JSON: {exc}")
    report = Path(out) / "report.json"
    if result.folder is None or Path(result.folder) != Path(out) or not report.is_file():
        problems.append("evaluate(out=…) did not write report.json there")
    elif json.loads(report.read_text()).get(MODEL_VERSION) != predictor.model_version:
        problems.append("report.json does not carry the model's version")
    return problems
