"""Reading a configuration mapping into frozen dataclasses: the typed half of ``node.config``.

Each value is converted to its field's annotated type (nested dataclasses, tagged unions chosen
by ``kind``, literals, tuples, mappings, numbers, booleans, strings), with ``${ENV}`` and
``${ENV:default}`` expanded in strings first (``$${`` for a literal ``${``). Every refusal names
the dotted path of the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from node.errors import ConfigError
from node.redaction import redacted_text

__all__ = ["build_dataclass", "expand_env", "required_keys"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

T = TypeVar("T")


def expand_env(value: str, environ: Mapping[str, str] | None = None) -> str:
    """``${NAME}`` and ``${NAME:default}`` replaced; a default may itself hold references
    (``${A:${B:x}}``), expanded only when it is used. ``$${`` is a literal ``${`` (a password or a
    template that holds one), whatever follows it. Other text that is no reference stays as it is."""
    env = os.environ if environ is None else environ
    out: list[str] = []
    i = 0
    while (start := value.find("${", i)) >= 0:
        if start > i and value[start - 1] == "$":  # escaped: `$${` is `${`, and what follows is text
            out.append(value[i:start - 1] + "${")
            i = start + 2
            continue
        out.append(value[i:start])
        name = _NAME.match(value, start + 2)
        after = name.end() if name else -1
        if name is None or after >= len(value) or value[after] not in ":}":
            out.append("${")
            i = start + 2
            continue
        end, default = after, None
        if value[after] == ":":
            end = _closing_brace(value, after + 1)
            if end < 0:
                out.append("${")
                i = start + 2
                continue
            default = value[after + 1:end]
        if name.group() in env:
            out.append(env[name.group()])
        elif default is None:
            raise ConfigError(f"environment variable {name.group()} is not set and has no default")
        else:
            out.append(expand_env(default, env))
        i = end + 1
    out.append(value[i:])
    return "".join(out)


def _closing_brace(value: str, i: int) -> int:
    """The index of the ``}`` closing a reference whose default starts at ``i`` (-1: none)."""
    depth = 1
    while i < len(value):
        if value.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if value[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _convert(tp: Any, value: Any, path: str, environ: Mapping[str, str] | None) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(value, str):
        try:
            value = expand_env(value, environ)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc.message}", field=path) from None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(value).__name__}", field=path)
        return build_dataclass(tp, value, path, environ)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        kinds = [a for a in args if dataclasses.is_dataclass(a) and "kind" in typing.get_type_hints(a)]
        if len(kinds) > 1:
            return _convert(_by_kind(kinds, value, path), value, path, environ)
        for arg in args:
            if arg is type(None):
                continue
            return _convert(arg, value, path, environ)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}: {_shown(value)} is not one of {', '.join(map(str, allowed))}", field=path)
        return value
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}", field=path)
        return tuple(_convert(inner, v, f"{path}[{i}]", environ) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}", field=path)
        _key_type, inner_type = typing.get_args(tp)
        return {str(k): _convert(inner_type, v, f"{path}.{redacted_text(str(k))}", environ) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_shown(value)}", field=path)
        return value
    if tp in (int, float):
        return _number(tp, value, path)
    if tp is str:
        if value is None or isinstance(value, dict | list):
            raise ConfigError(f"{path}: expected a string, got {_shown(value)}", field=path)
        return str(value)
    raise ConfigError(f"{path}: unsupported type {tp}")  # pragma: no cover - programming error


_LARGEST_INT = 2**63 - 1  # what the store's integers hold
_LARGEST_FLOAT = 1e9  # seconds: about 31 years, under threading.TIMEOUT_MAX


def _number(tp: type[int] | type[float], value: Any, path: str) -> int | float:
    """An int or float setting: ``2.7`` is no count and ``true`` no number; nan and inf are no setting.

    Numbers written as text (from ``${ENV}``) are read as numbers first.
    """
    if isinstance(value, str):
        try:
            value = float(value) if tp is float or not value.strip().lstrip("+-").isdigit() else int(value)
        except ValueError:
            raise ConfigError(f"{path}: expected a number, got {_shown(value)}", field=path) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path}: expected a number, got {_shown(value)}", field=path)
    if not math.isfinite(value):
        raise ConfigError(f"{path}: expected a finite number, got {_shown(value)}", field=path)
    if abs(value) > (_LARGEST_INT if tp is int else _LARGEST_FLOAT):
        # No setting is that large; taken, it would fail later, far from its key (a thread's wait
        # beyond threading.TIMEOUT_MAX, an id the store cannot hold).
        raise ConfigError(f"{path}: {_shown(value)} is larger than any setting takes", field=path)
    if tp is int:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{path}: expected a whole number, got {_shown(value)}", field=path)
        return int(value)
    return float(value)


def _by_kind(options: list[Any], value: Any, path: str) -> Any:
    """The dataclass of a tagged union whose ``kind`` literal matches ``value['kind']``."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}", field=path)
    if "kind" not in value:
        raise ConfigError(f"missing configuration key: {path}.kind", field=f"{path}.kind")
    allowed: list[str] = []
    for option in options:
        names = typing.get_args(typing.get_type_hints(option)["kind"])
        if value["kind"] in names:
            return option
        allowed.extend(names)
    raise ConfigError(f"{path}.kind: {_shown(value['kind'])} is not one of {', '.join(allowed)}", field=f"{path}.kind")


def required_keys(cls: type[Any], path: str = "") -> list[str]:
    """The dotted keys a file must give for ``cls``: its fields without a default, and theirs."""
    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            tp = hints[f.name]
            sub = f"{path}{f.name}"
            nested = dataclasses.is_dataclass(tp) and isinstance(tp, type)
            out.extend(required_keys(tp, f"{sub}.") if nested else [sub])
    return out


def _shown(value: object) -> str:
    """A refused value as a message quotes it: a URL's password in it (a url given as a list, a
    broker url under a number's key) is no more shown here than by show-config."""
    return redacted_text(repr(value))


def _shown_key(key: object) -> str:
    text = redacted_text(str(key))  # before it is cut short, which could cut the password's end off
    return text if len(text) <= 40 else text[:37] + "..."


def build_dataclass(cls: type[T], data: Mapping[str, Any], path: str, environ: Mapping[str, str] | None) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        # A key is shown cut short: a file that is not a node config (a key that is a whole
        # line of something else) must not be echoed back to the terminal.
        where = ", ".join(f"{path}.{_shown_key(k)}" if path else _shown_key(k) for k in unknown[:5])
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        first = f"{path}.{_shown_key(unknown[0])}" if path else _shown_key(unknown[0])
        raise ConfigError(f"unknown configuration key: {where}{more}", field=first)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], sub, environ)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing configuration key: {sub}", field=sub)
    return cls(**kwargs)
