"""A folder of named bundles with per-domain ``latest`` / ``production`` aliases.

Layout under ``$LEPTON_HOME`` (default ``./lepton_models``)::

    lepton_models/
      aliases.json                 {"medical": {"latest": "medical-…", "production": "…"}}
      medical-binary-20261123-0130/ bundle.json, model.safetensors, …

A reference to a model (CLI, API, UI) may be a registry name, ``DOMAIN:ALIAS``
(``medical:production``), or a path to a bundle folder.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from lepton_apps.bundle import MANIFEST, Bundle, load_bundle
from lepton_apps.errors import BundleError
from lepton_apps.io import atomic_write_json

ALIASES_FILE = "aliases.json"
ALIASES = ("latest", "production")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def default_home() -> Path:
    """Return the registry folder: ``$LEPTON_HOME`` or ``./lepton_models``."""
    return Path(os.environ.get("LEPTON_HOME") or "lepton_models").expanduser()


@dataclasses.dataclass
class RegistryEntry:
    """One registered bundle, read from its ``bundle.json`` (checksums are checked on load)."""

    name: str
    path: Path
    domain: str
    task: str
    created: str
    metrics: dict[str, Any]
    aliases: list[str]

    def load(self) -> Bundle:
        """Return the verified bundle."""
        return load_bundle(self.path)


class Registry:
    """The bundle registry at ``home`` (default :func:`default_home`)."""

    def __init__(self, home: str | os.PathLike | None = None):
        self.home = Path(home) if home is not None else default_home()

    # -- aliases -----------------------------------------------------------------------
    def _aliases(self) -> dict[str, dict[str, str]]:
        f = self.home / ALIASES_FILE
        if not f.is_file():
            return {}
        try:
            return json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BundleError(f"{ALIASES_FILE} is not valid JSON ({exc})", where=str(f),
                              fix="delete the file; aliases can be set again with 'lepton-apps models promote'") from None

    def _set_alias(self, domain: str, alias: str, name: str) -> None:
        aliases = self._aliases()
        aliases.setdefault(domain, {})[alias] = name
        atomic_write_json(self.home / ALIASES_FILE, aliases)

    # -- queries -----------------------------------------------------------------------
    def list(self, domain: str | None = None) -> list[RegistryEntry]:
        """Return the registered bundles, newest first (optionally of one domain)."""
        if not self.home.is_dir():
            return []
        aliases = self._aliases()
        entries = []
        for d in self.home.iterdir():
            manifest = d / MANIFEST
            if d.name.startswith(".") or not manifest.is_file():
                continue
            try:
                meta = json.loads(manifest.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # reported by damaged()
            if domain and meta.get("domain") != domain:
                continue
            dom = meta.get("domain", "?")
            entries.append(RegistryEntry(
                name=d.name, path=d, domain=dom, task=meta.get("task", "?"), created=meta.get("created", ""),
                metrics=meta.get("metrics") or {},
                aliases=sorted(a for a, n in aliases.get(dom, {}).items() if n == d.name),
            ))
        return sorted(entries, key=lambda e: (e.created, e.name), reverse=True)

    def damaged(self) -> dict[str, str]:
        """Return ``{folder name: reason}`` for registry folders whose bundle.json cannot be read."""
        bad = {}
        if self.home.is_dir():
            for d in sorted(self.home.iterdir()):
                manifest = d / MANIFEST
                if d.name.startswith(".") or not manifest.is_file():
                    continue
                try:
                    json.loads(manifest.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    bad[d.name] = f"{MANIFEST} is not valid JSON ({exc}); the bundle is damaged: retrain or remove it"
        return bad

    def get(self, ref: str) -> RegistryEntry:
        """Return the entry for a name or ``DOMAIN:ALIAS``; BundleError listing what exists."""
        name = ref
        if ":" in ref:
            domain, alias = ref.split(":", 1)
            name = self._aliases().get(domain, {}).get(alias)
            if name is None:
                raise BundleError(f"no {domain!r} model has the alias {alias!r}", where=str(self.home),
                                  fix=f"train one, or set it with 'lepton-apps models promote NAME --alias {alias}'")
        for entry in self.list():
            if entry.name == name:
                return entry
        known = ", ".join(e.name for e in self.list()) or "none"
        raise BundleError(f"no model named {name!r} in the registry", where=str(self.home),
                          fix=f"registered models: {known}; set LEPTON_HOME if the registry is elsewhere")

    def resolve(self, ref: str | os.PathLike, domain: str | None = None) -> Path:
        """Return the bundle folder for a path, a registry name or ``DOMAIN:ALIAS``.

        A bare alias (``production``) is read as ``domain:production`` when ``domain`` is given.
        """
        path = Path(ref)
        if path.exists():
            return path
        ref = str(ref)
        if domain and ref in ALIASES:
            ref = f"{domain}:{ref}"
        return self.get(ref).path

    # -- changes -----------------------------------------------------------------------
    def free_name(self, prefix: str) -> str:
        """Return ``<prefix>-<UTC time>`` (e.g. ``support-demo-20261207-153000``), with ``-2``, ``-3``… appended
        when a bundle of that name is registered already (two within one second): the names the registry gives
        and the demo builders use."""
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        name, n = f"{prefix}-{stamp}", 2
        while (self.home / name).exists():
            name, n = f"{prefix}-{stamp}-{n}", n + 1
        return name

    def register(self, bundle_dir: str | os.PathLike, name: str | None = None, *, move: bool = False,
                 set_latest: bool = True) -> RegistryEntry:
        """Copy (or move) a verified bundle into the registry; return its entry.

        The name defaults to ``<domain>-<task>-<UTC timestamp>``; ``latest`` for the bundle's
        domain points at it unless ``set_latest=False``.
        """
        bundle = load_bundle(bundle_dir)
        if name is None:
            name = self.free_name(f"{bundle.domain}-{bundle.task}")
        if not _NAME_RE.match(name):
            raise BundleError(f"invalid model name {name!r}",
                              fix="use letters, digits, '.', '_' or '-' (at most 100 characters)")
        target = self.home / name
        if target.exists():
            raise BundleError(f"a model named {name!r} is already registered", where=str(self.home),
                              fix="choose another name, or remove the old one with 'lepton-apps models remove'")
        self.home.mkdir(parents=True, exist_ok=True)
        if Path(bundle_dir).resolve() != target.resolve():
            tmp = self.home / f".{name}.incoming"
            shutil.rmtree(tmp, ignore_errors=True)
            if move:
                shutil.move(str(bundle_dir), tmp)
            else:
                shutil.copytree(bundle_dir, tmp)
            os.replace(tmp, target)
        if set_latest:
            self._set_alias(bundle.domain, "latest", name)
        return self.get(name)

    def promote(self, name: str, alias: str = "production") -> RegistryEntry:
        """Point ``alias`` of the model's domain at ``name`` after verifying its checksums."""
        if alias not in ALIASES:
            raise BundleError(f"unknown alias {alias!r}", fix=f"use one of: {', '.join(ALIASES)}")
        entry = self.get(name)
        entry.load()  # never promote a damaged bundle
        self._set_alias(entry.domain, alias, entry.name)
        return self.get(entry.name)

    def remove(self, name: str) -> None:
        """Delete a registered bundle and any alias pointing at it."""
        entry = self.get(name)
        aliases = self._aliases()
        for alias, target in list(aliases.get(entry.domain, {}).items()):
            if target == entry.name:
                del aliases[entry.domain][alias]
        atomic_write_json(self.home / ALIASES_FILE, aliases)
        shutil.rmtree(entry.path)
