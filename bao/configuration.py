"""Configuration files: YAML loading, ``--set a.b=c`` overrides, one-line validation errors.

Every config is a pydantic v2 model with ``extra="forbid"``, validated once before any work
starts. Errors name the key path, echo the bad value, and say how to fix it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from bao.errors import BaoError

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(BaoError):
    """A configuration file or override that cannot be used."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Reads a YAML mapping, or raises :class:`ConfigError` naming the file and the line."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"config file {str(source)!r} does not exist", fix="check the path")
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}: {problem}{where}", fix="fix the YAML syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of keys, found {type(data).__name__}",
            fix="write 'key: value' lines",
        )
    return data


def add_override_option(parser: argparse.ArgumentParser, example: str) -> None:
    """The ``--set KEY=VALUE`` option every config-taking subcommand has."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. --set {example} (repeatable)",
    )


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``a.b.c=value`` overrides; values are parsed as YAML (``0.1``, ``true``, ``[1, 2]``).

    A number indexes a list (``objectives.0.metric=eval/score``), and keys that contain dots
    themselves are matched whole (``search_space.shaping.user_lambda.high=0.3``).
    Intermediate mappings are created as needed; a typo still fails validation afterwards,
    because the models forbid unknown keys.
    """
    result: dict[str, Any] = _deep_copy(data)
    for override in overrides:
        key, separator, text = override.partition("=")
        key = key.strip()
        if not separator or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"override {override!r} is not of the form key.path=value",
                fix="e.g. --set shaping.user_lambda=0.1",
            )
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        _set_path(result, key.split("."), value, override)
    return result


def _set_path(root: dict[str, Any], parts: list[str], value: Any, override: str) -> None:
    node: Any = root
    done: list[str] = []
    while parts:
        if isinstance(node, list):
            index = int(parts[0]) if parts[0].isdigit() else -1
            if not 0 <= index < len(node):
                raise ConfigError(
                    f"override {override!r}: {'.'.join(done)} is a list of {len(node)} items "
                    f"and {parts[0]!r} is not an index of it",
                    fix=f"use an index from 0 to {len(node) - 1}",
                )
            step: int | str = index
            parts = parts[1:]
        elif isinstance(node, dict):
            # The longest run of parts that is an existing key: keys may contain dots.
            size = next((n for n in range(len(parts), 1, -1) if ".".join(parts[:n]) in node), 1)
            step, parts = ".".join(parts[:size]), parts[size:]
        else:
            raise ConfigError(
                f"override {override!r}: {'.'.join(done)} is not a section",
                value=node,
                fix="override the value itself, not a key inside it",
            )
        done.append(str(step))
        if not parts:
            node[step] = value
            return
        child = node.get(step) if isinstance(node, dict) else node[int(step)]
        if child is None:
            child = node[step] = {}
        node = child


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def validate(
    model: type[ModelT], data: Mapping[str, Any], *, source: str, overrides: Sequence[str] = ()
) -> ModelT:
    """Validates ``data`` into ``model``; the first problem becomes a one-line ConfigError.

    ``data`` is ``source`` with ``overrides`` applied: a problem at a key an override set
    names the ``--set`` option, not the file (where the value was not written)."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        keys, _ = _walk(model, first["loc"])
        key = ".".join(keys) or "(top level)"
        if keys:
            source = _blamed(source, key, overrides)
        kind = first["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, first["loc"][:-1])
            raise ConfigError(
                f"{source}: unknown key {key!r}",
                fix=f"allowed keys here: {', '.join(allowed)}" if allowed else "remove it",
            ) from None
        if kind == "missing" and isinstance(first["loc"][-1], int):
            # A fixed-length list (a tuple field) that is too short: pydantic reports its
            # first absent item as a missing key, which is not what the user wrote.
            parent = ".".join(keys[:-1])
            raise ConfigError(
                f"{source}: key {parent!r} has too few items (item {first['loc'][-1]} is missing)",
                value=first.get("input"),
                fix="give one value per item, as the documented example config does",
            ) from None
        if kind == "missing":
            raise ConfigError(f"{source}: missing key {key!r}", fix="add it") from None
        message = str(first["msg"]).removeprefix("Value error, ")
        if not first["loc"]:  # a check across keys: echoing the whole config would not help
            raise ConfigError(f"{source}: {message}", fix="fix the values it names") from None
        raise ConfigError(
            f"{source}: key {key!r}: {message}", value=first.get("input"), fix="fix the value"
        ) from None


def _blamed(source: str, key: str, overrides: Sequence[str]) -> str:
    """``--set KEY=VALUE (on SOURCE)`` when the last override touching ``key`` (the key
    itself, a key inside it, or a section around it) set what failed; else ``source``."""
    for override in reversed(overrides):
        name = override.partition("=")[0].strip()
        if key == name or key.startswith(f"{name}.") or name.startswith(f"{key}."):
            return f"--set {override} (on {source})"
    return source


def _allowed_keys(model: type[BaseModel], path: Sequence[Any]) -> list[str]:
    _, current = _walk(model, path)
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def _walk(model: type[BaseModel], loc: Sequence[Any]) -> tuple[list[str], Any]:
    """Follows a pydantic error location through ``model``: the keys as the user wrote them
    and the type at the end (None where the location leaves the model's types).

    Locations also hold the tag of the union member that was tried (``search_space.x.float``
    for a ``type: float`` parameter, ``backend.sim``): that is not a key of the file, so it
    is left out of the keys, and the walk goes on in that member.
    """
    keys: list[str] = []
    current: Any = model
    for part in loc:
        current = _unannotated(current)
        if get_origin(current) in (Union, UnionType):
            member = _union_member(current, part)
            if member is not None:
                current = member
                continue
        keys.append(str(part))
        fields = getattr(current, "model_fields", None)
        if fields is not None:
            field = fields.get(part)
            current = field.annotation if field is not None else None
        elif get_origin(current) in (dict, Mapping, list, tuple, Sequence):
            current = get_args(current)[-1 if get_origin(current) in (dict, Mapping) else 0]
        else:
            current = None
    return keys, _unannotated(current)


def _unannotated(kind: Any) -> Any:
    while get_origin(kind) is Annotated:
        kind = get_args(kind)[0]
    return kind


def _union_member(union: Any, tag: object) -> Any:
    """The member of ``union`` that a location part names: by a discriminator value (a
    ``Literal`` field) or by its class name; None when the part is no such tag."""
    for member in map(_unannotated, get_args(union)):
        if getattr(member, "__name__", None) == tag:
            return member
        for field in getattr(member, "model_fields", {}).values():
            if get_origin(field.annotation) is Literal and tag in get_args(field.annotation):
                return member
    return None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: how configs are logged as MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` laid over ``base``, nested mappings merged key by key (a sweep's
    ``train:`` over its training config)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
