"""Serving: the HTTP service over every domain's predictor (``lepton-apps serve``).

``create_app`` (in :mod:`lepton_apps.serve.app`) builds the FastAPI application; FastAPI, uvicorn and
prometheus-client are imported only when it is used.
"""
from __future__ import annotations

from pathlib import Path


def default_refs(home: str | Path | None = None) -> dict[str, str]:
    """Return ``{domain: "domain:production"}`` (else ``"domain:latest"``) for every installed domain with a
    predictor and a registered model."""
    from lepton_apps.domains import available_domains
    from lepton_apps.registry import Registry

    reg = Registry(home)
    refs = {}
    for name, spec in available_domains().items():
        if not spec.predictor:
            continue
        aliases = {a for e in reg.list(name) for a in e.aliases}
        for alias in ("production", "latest"):
            if alias in aliases:
                refs[name] = f"{name}:{alias}"
                break
    return refs


def refs_from_args(models: list[str], home: str | Path | None = None) -> dict[str, str]:
    """Return ``{domain: ref}`` for model references given on the command line (bundle folders, registry
    names or DOMAIN:ALIAS), or :func:`default_refs` when none are given. Raises LeptonError for two models of
    one domain or when nothing can be served."""
    from lepton_apps.errors import ConfigError
    from lepton_apps.predictor import resolve

    if not models:
        refs = default_refs(home)
        if not refs:
            raise ConfigError("no model to serve: the registry has no production or latest model",
                              fix="train one (lepton-apps <domain> train … --register NAME), run 'lepton-apps demo', "
                                  "or name bundles: lepton-apps serve runs/xray/bundle support:latest")
        return refs
    refs: dict[str, str] = {}
    for ref in models:
        _, domain = resolve(ref, home=home)
        if domain in refs:
            raise ConfigError(f"two {domain} models given ({refs[domain]!r} and {ref!r})",
                              fix="serve one model per domain; run a second service for the other")
        refs[domain] = ref
    return refs
