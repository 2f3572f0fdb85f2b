"""Configs are pydantic models: typed, validated, loadable from YAML, strict about keys."""
from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from lepton_apps.errors import ConfigError

C = TypeVar("C", bound="LeptonConfig")


class LeptonConfig(BaseModel):
    """Base for every config: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, source: str = "config") -> C:
        """Validate ``data``; raise :class:`ConfigError` naming every bad or unknown key."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"expected a mapping of keys to values, got {type(data).__name__}",
                where=source,
                fix=f"write the config as 'key: value' lines; valid keys: {', '.join(cls.model_fields)}",
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error_from(exc, cls, source) from None

    @classmethod
    def from_yaml(cls: type[C], path: str | Path) -> C:
        """Load and validate a YAML file; raise :class:`ConfigError` on a missing file or bad key."""
        return cls.from_dict(read_yaml_mapping(path, cls), source=str(path))

    @classmethod
    def from_yaml_and_overrides(cls: type[C], path: str | Path | None, overrides: dict[str, Any]) -> C:
        """Return the config of the YAML file at ``path`` (none: an empty one) with ``overrides`` on top.

        The YAML is read as a plain mapping and validated only after the overrides are merged, so a
        required key (such as ``data``) may come from the command line instead of the file. Override
        values that are None are ignored (a flag that was not given); a dict override is merged into
        the YAML's mapping of the same key, key by key. Errors name the YAML file (or "command line").
        """
        data = read_yaml_mapping(path, cls) if path is not None else {}
        merged = merge_overrides(data, overrides)
        source = str(path) if path is not None else "command line"
        missing = [k for k, f in cls.model_fields.items() if f.is_required() and merged.get(k) is None]
        if missing:
            where = f"{source} ({cls.__name__})"
            raise ConfigError(f"no {' or '.join(repr(k) for k in missing)} given", where=where,
                              fix=f"pass it on the command line, or write '{missing[0]}: …' in the YAML config")
        return cls.from_dict(merged, source=source)

    def to_yaml(self) -> str:
        """Return the config as YAML text (round-trips through :meth:`from_yaml`)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def read_yaml_mapping(path: str | Path, cls: type[BaseModel] | None = None) -> dict[str, Any]:
    """Return the YAML file at ``path`` as a dict (an empty file is ``{}``); ConfigError when the file
    is missing, is not valid YAML or is not a mapping of keys to values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", fix="check the path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", where=str(path), fix="correct the YAML syntax") from None
    if not isinstance(data, dict):
        keys = f"; valid keys: {', '.join(cls.model_fields)}" if cls is not None else ""
        raise ConfigError(f"expected a mapping of keys to values, got {type(data).__name__}", where=str(path),
                          fix=f"write the config as 'key: value' lines{keys}")
    return data


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``base`` with the non-None ``overrides`` set; dicts are merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out


def config_error_from(exc: ValidationError, cls: type[BaseModel], source: str) -> ConfigError:
    """Turn a pydantic ValidationError into one ConfigError line naming each offending key."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        elif err["type"] == "missing":
            problems.append(f"required key '{key}' is missing")
        else:
            problems.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
    valid = ", ".join(cls.model_fields)
    return ConfigError("; ".join(problems), where=f"{source} ({cls.__name__})", fix=f"valid keys are: {valid}")


def parse_time(text: str | None, flag: str):
    """Return the datetime of an ISO time given on the command line (None for None); ConfigError naming ``flag``."""
    import datetime as dt

    if text is None:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as a time", where=flag, fix="use ISO format, e.g. 2026-12-01T08:00") from None
