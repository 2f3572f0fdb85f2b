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
import types
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

ENTRY_POINT_GROUP = "lepton_apps.domains"


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """What a domain template contributes to the suite.

    name:        short id used in the CLI (``lepton-apps <name> …``) and registry.
    title:       human title for the hub.
    summary:     one paragraph for the hub's home page.
    cli:         a ``typer.Typer`` sub-app with the domain's verbs, or None.
    page:        path to a Streamlit page script, or None while the domain has no page.
    icon:        an emoji or Material icon for the navigation.
    build_demo:  ``build_demo(workdir: Path, registry: Registry) -> str`` builds demo data and a
                 quick demo bundle, registers it, and returns the bundle name; None if none yet.
    headline_metrics: metric keys the hub shows for this domain's bundles.
    """

    name: str
    title: str
    summary: str
    cli: Any = None
    page: Path | None = None
    icon: str = ":material/apps:"
    build_demo: Callable[..., str] | None = None
    headline_metrics: tuple[str, ...] = ()


class _DomainPackage(types.ModuleType):
    """A package whose public functions are not replaced by same-named submodules on import."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("__lepton_functions__", ()):
            return
        super().__setattr__(name, value)


def keep_functions(package_name: str, *names: str) -> None:
    """Keep ``package.<name>`` the function even after the submodule ``package/<name>.py`` is imported.

    Python sets a package attribute to each submodule it imports, so ``train`` (the function the
    domain API promises) would silently become the module ``train.py`` once anything imported it.
    Call ``keep_functions(__name__, "train")`` at the top of a domain's ``__init__.py``.
    """
    module = sys.modules[package_name]
    module.__dict__["__lepton_functions__"] = frozenset(names)
    module.__class__ = _DomainPackage


def lazy_function(package_name: str, submodule: str, name: str, doc: str) -> Callable[..., Any]:
    """Return a plain function that imports ``package.submodule.name`` on its first call and calls it.

    For the functions a domain package exposes without importing their heavy module (``train``,
    the demo builder): the package and its ``DomainSpec`` stay cheap to import.
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(f"{package_name}.{submodule}"), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__module__ = package_name
    call.__doc__ = f"{doc} (see :func:`{package_name}.{submodule}.{name}`)."
    return call


def lazy_exports(package_name: str, names: dict[str, str]) -> Callable[[str], Any]:
    """Return a module-level ``__getattr__`` that imports ``name`` from submodule ``names[name]`` on first use.

    Keeps ``import lepton_apps.<domain>`` light (no torch, LightGBM or transformers) for the CLI and the
    hub, while ``from lepton_apps.<domain> import Predictor`` still works.
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
