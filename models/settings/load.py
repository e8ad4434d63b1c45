"""Loading the settings: the TOML file, then `MEMBERBOT_<SECTION>_<KEY>` environment
variables, validated into `models.settings.Settings`; any problem is a `ConfigError`
whose one-line message names the key (and the file or variable it came from)."""

from __future__ import annotations

import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from models.settings import Settings

ENV_PREFIX = "MEMBERBOT_"


class ConfigError(Exception):
    """Bad configuration: the message names the key and fits on one line."""


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class behind a field annotation, if the field is a sub-table."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_plain_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return all(a is str or a is type(None) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_plain_str(typing.get_args(annotation)[0])
    if origin is Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    return False


def env_keys(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX, path: tuple = ()):
    """Yield (env var name, key path, annotation) for every leaf key of the settings."""
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        env = f"{prefix}{name.upper()}"
        if sub is not None:
            yield from env_keys(sub, env + "_", (*path, name))
        else:
            yield env, (*path, name), field.annotation


def _apply_env(data: dict, environ: Mapping[str, str]) -> dict[tuple, str]:
    sourced: dict[tuple, str] = {}
    for env, path, annotation in env_keys():
        if env not in environ:
            continue
        raw = environ[env]
        if _is_plain_str(annotation):
            value: Any = raw
        else:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
        sourced[path] = env
    return sourced


def _one_line(exc: ValidationError, sourced: dict[tuple, str], origin: str) -> str:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "(root)"
    where = origin
    for path, env in sourced.items():
        if loc[: len(path)] == tuple(path):
            where = f"environment variable {env}"
    if err["type"] == "extra_forbidden":
        return f"config error: unknown key '{key}' in {where}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"config error: {key}: {msg} (in {where})"


def resolve_config_path(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """--config, else $MEMBERBOT_CONFIG, else ./config.toml if present, else None."""
    if explicit:
        return Path(explicit)
    if environ.get("MEMBERBOT_CONFIG"):
        return Path(environ["MEMBERBOT_CONFIG"])
    default = Path("config.toml")
    return default if default.is_file() else None


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: dict | None = None,
) -> Settings:
    """Build the settings. Raises ConfigError with a one-line message on any problem."""
    environ = os.environ if environ is None else environ
    data: dict = {}
    origin = "defaults"
    if path is not None:
        p = Path(path)
        origin = str(p)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config error: file not found: {p}") from None
        except OSError as exc:
            raise ConfigError(f"config error: cannot read {p}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config error: {p} is not valid TOML: {exc}") from None
    if overrides:
        _deep_merge(data, overrides)
    sourced = _apply_env(data, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, sourced, origin)) from None


def _deep_merge(into: dict, other: Mapping) -> None:
    for k, v in other.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = v
