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
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}", fix="check the path")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML: {exc}", where=str(path), fix="correct the YAML syntax") from None
        return cls.from_dict(data, source=str(path))

    def to_yaml(self) -> str:
        """Return the config as YAML text (round-trips through :meth:`from_yaml`)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def config_error_from(exc: ValidationError, cls: type[BaseModel], source: str) -> ConfigError:
    """Turn a pydantic ValidationError into one ConfigError line naming each offending key."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        else:
            problems.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
    valid = ", ".join(cls.model_fields)
    return ConfigError("; ".join(problems), where=f"{source} ({cls.__name__})", fix=f"valid keys are: {valid}")
