"""Discovery of domain templates through the ``lepton_apps.domains`` entry-point group.

The core never imports a domain package by name: each domain declares a :class:`DomainSpec`
and registers it in ``pyproject.toml``::

    [project.entry-points."lepton_apps.domains"]
    medical = "lepton_apps.medical:DOMAIN"

so a fourth template (or a user's own) plugs in the same way.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from lepton_apps.errors import LeptonError

ENTRY_POINT_GROUP = "lepton_apps.domains"


@dataclasses.dataclass(frozen=True)
class EvaluateOption:
    """An extra option (``--name``) of a domain's ``evaluate`` verb; it mirrors a keyword argument of the
    predictor's ``evaluate`` (the contract test checks that)."""

    name: str
    type: type
    default: Any
    help: str


@dataclasses.dataclass(frozen=True)
class EvaluateSpec:
    """How the core's ``lepton-apps <domain> evaluate MODEL [DATA]`` verb takes its data and options
    (declared here, not read from the predictor class, so that mounting the CLI imports no model code)."""

    data_help: str
    data_required: bool = True
    options: tuple[EvaluateOption, ...] = ()


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """What a domain template contributes to the suite.

    name:        short id used in the CLI (``lepton-apps <name> …``) and registry.
    title:       human title for the hub.
    summary:     one paragraph for the hub's home page.
    cli:         a ``typer.Typer`` sub-app with the domain's verbs, or None.
    page:        path to a Streamlit page script, or None while the domain has no page.
    icon:        an emoji or Material icon for the navigation.
    build_demo:  ``"package.module:function"`` of ``build_demo(workdir: Path, registry: Registry) -> str``
                 (or a list of names), which builds demo data and quick demo bundles, registers them and
                 returns their names; None if none yet. Imported on first use by :meth:`demo_builder`, so the spec
                 stays cheap to import.
    predictor:   ``"package.module:Class"`` of the domain's predictor (``Class.load(bundle_dir)``), or
                 None; imported on first use by :meth:`predictor_class`.
    backend_export: ``"package.module:function"`` of ``function(bundle_dir, out, precision) -> Path``, which writes
                 the checked ONNX export (``precision`` fp32 or int8) that the predictor's ONNX backend loads;
                 :func:`lepton_apps.export.cached_export` calls it on first use, so the predictor never imports
                 its exporter (the exporter checks its output against the predictor); None without one.
    headline_metrics: metric keys the hub shows for this domain's bundles.
    evaluate:    the data and options of the domain's ``evaluate`` verb (:class:`EvaluateSpec`), or None
                 when the predictor has no ``evaluate``.
    live_metrics: ``"package.module:function"`` measuring one window of served, labelled items
                 (:mod:`lepton_apps.monitor.live`), or None.
    outcome_key: the result field an outcome may be matched on besides its request id (finance:
                 ``transaction_id``), or None.
    label_delay_days: how long outcomes usually take to come back (weeks younger than this are marked
                 incomplete in live reports).
    primary_metric: the live metric that decides champion vs challenger (``monitor compare``,
                 ``models promote``), higher is better.
    """

    name: str
    title: str
    summary: str
    cli: Any = None
    page: Path | None = None
    icon: str = ":material/apps:"
    build_demo: str | None = None
    predictor: str | None = None
    backend_export: str | None = None
    headline_metrics: tuple[str, ...] = ()
    evaluate: EvaluateSpec | None = None
    live_metrics: str | None = None
    outcome_key: str | None = None
    label_delay_days: float = 0.0
    primary_metric: str | None = None

    def demo_builder(self) -> Callable[..., str] | None:
        """Return the demo builder named by ``build_demo`` (imported now), or None if the domain has none."""
        return None if self.build_demo is None else _import_object(self.build_demo, self.name, "build_demo")

    def live_metrics_function(self) -> Callable[..., dict] | None:
        """Return the function named by ``live_metrics`` (imported now), or None."""
        return None if self.live_metrics is None else _import_object(self.live_metrics, self.name, "live_metrics")

    def predictor_class(self) -> type | None:
        """Return the predictor class named by ``predictor`` (imported now), or None if the domain has none."""
        return None if self.predictor is None else _import_object(self.predictor, self.name, "predictor")

    def backend_exporter(self) -> Callable[..., Path] | None:
        """Return the function named by ``backend_export`` (imported now), or None if the domain has none."""
        return None if self.backend_export is None else _import_object(self.backend_export, self.name,
                                                                        "backend_export")


def _import_object(ref: str, domain: str, field: str) -> Any:
    """Return the object ``ref`` (``"package.module:name"``) names, importing its module.

    Raises LeptonError naming the reference and the DomainSpec field when it is malformed or does not import.
    """
    where = f"DomainSpec({domain!r}).{field} = {ref!r}"
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise LeptonError(f"malformed reference {ref!r}", where=where,
                          fix='write it as "package.module:name", e.g. "lepton_apps.medical.demo:build_demo"')
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            fix = "correct the module path in the domain's __init__.py, or reinstall the package (pip install -e .)"
        else:
            fix = f"install what {module_name} needs ({missing or 'see the message'}), e.g. pip install -e ."
        raise LeptonError(f"cannot import {module_name!r} for {ref!r}: {exc}", where=where, fix=fix) from exc
    try:
        return functools.reduce(getattr, attr.split("."), module)
    except AttributeError as exc:
        raise LeptonError(f"module {module_name!r} has no {attr!r} (reference {ref!r})", where=where,
                          fix=f"correct the name after ':' to one that {module_name} defines") from exc


def lazy_exports(package_name: str, names: dict[str, str]) -> Callable[[str], Any]:
    """Return a module-level ``__getattr__`` that imports ``name`` from submodule ``names[name]`` on first use.

    Keeps ``import lepton_apps.<domain>`` light (no torch, LightGBM or transformers) for the CLI and the
    hub, while ``from lepton_apps.<domain> import Predictor, train`` still works.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package_name}.{names[name]}"), name)
        setattr(sys.modules[package_name], name, value)  # later lookups skip this function
        return value

    return __getattr__


@functools.lru_cache(maxsize=1)
def _discover() -> tuple[dict[str, DomainSpec], dict[str, str]]:
    found: dict[str, DomainSpec] = {}
    errors: dict[str, str] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            spec = ep.load()
        except Exception as exc:  # one broken template must not hide the others
            errors[ep.name] = f"could not import {ep.value}: {type(exc).__name__}: {exc}"
            continue
        if not isinstance(spec, DomainSpec):
            errors[ep.name] = f"entry point {ep.value!r} must point to a DomainSpec, got {type(spec).__name__}"
            continue
        found[spec.name] = spec
    order = ["medical", "finance", "support"]
    ranked = dict(sorted(found.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 99, kv[0])))
    return ranked, errors


def available_domains() -> dict[str, DomainSpec]:
    """Return the installed domains that loaded, by name, in a stable order (medical, finance, support, others)."""
    return _discover()[0]


def domain_load_errors() -> dict[str, str]:
    """Return ``{entry point name: reason}`` for installed domains that failed to load."""
    return _discover()[1]
