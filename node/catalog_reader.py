"""Strict reading of catalogue YAML: typed getters that name the dotted path of a bad key.

:class:`Obj` wraps one mapping at a path (``items.admin_penalty.fields[3]``); each getter records
the key it read, and :meth:`Obj.close` refuses the keys nobody read, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from node.errors import CatalogError

T = TypeVar("T")


def _type_name(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _scalar(value: object) -> bool:
    """A string, or an integer taken as written (enum values 1 and 2); never a boolean."""
    return isinstance(value, str | int) and not isinstance(value, bool)


class Obj:
    """A YAML mapping being read: typed getters that record the key, then :meth:`close`."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, Mapping):
            raise CatalogError(f"{path or 'top level'}: expected a mapping, got {_type_name(value)}")
        self.data: Mapping[Any, Any] = value
        self.path = path
        self.seen: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, required: bool) -> object:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise CatalogError(f"{self.at(key)}: missing")
            return None
        return self.data[key]

    def text(self, key: str, default: str | None = None) -> str:
        v = self.raw(key, default is None)
        if v is None:
            return default or ""
        if not isinstance(v, str):
            hint = " (quote it)" if isinstance(v, int | float) else ""
            raise CatalogError(f"{self.at(key)}: expected a string, got {_type_name(v)} {v!r}{hint}")
        return v.strip()

    def flag(self, key: str) -> bool:
        v = self.raw(key, False)
        if v is not None and not isinstance(v, bool):
            raise CatalogError(f"{self.at(key)}: expected true or false, got {v!r}")
        return bool(v)

    def count(self, key: str, default: int = 0) -> int:
        v = self.raw(key, False)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CatalogError(f"{self.at(key)}: expected a whole number ≥ 0, got {v!r}")
        return v

    def number(self, key: str) -> Decimal | None:
        v = self.raw(key, False)
        if v is None:
            return None
        try:
            if isinstance(v, bool) or not isinstance(v, int | float | str):
                raise InvalidOperation
            d = Decimal(str(v))
        except InvalidOperation:
            raise CatalogError(f"{self.at(key)}: expected a number, got {v!r}") from None
        if not d.is_finite():
            raise CatalogError(f"{self.at(key)}: expected a finite number, got {v!r}")
        return d

    def texts(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        """A list of strings; integers are taken as written (enum values such as 1 and 2)."""
        v = self.raw(key, required)
        if v is None:
            return ()
        if not isinstance(v, list):
            raise CatalogError(f"{self.at(key)}: expected a list, got {_type_name(v)}")
        out = []
        for i, e in enumerate(v):
            if not _scalar(e):
                raise CatalogError(f"{self.at(key)}[{i}]: expected a string, got {_type_name(e)} {e!r}")
            out.append(str(e).strip())
        if len(set(out)) != len(out):
            dup = next(x for x in out if out.count(x) > 1)
            raise CatalogError(f"{self.at(key)}: {dup!r} is listed twice")
        return tuple(out)

    def mapping(self, key: str) -> dict[str, str]:
        v = self.raw(key, False)
        if v is None:
            return {}
        m = Obj(v, self.at(key))
        for k, val in m.data.items():
            if not (_scalar(k) and _scalar(val)):
                raise CatalogError(f"{m.at(str(k))}: expected a string → string mapping, got {val!r}")
        return {str(k).strip(): str(val).strip() for k, val in m.data.items()}

    def obj(self, key: str) -> Obj:
        return Obj(self.raw(key, True), self.at(key))

    def objs(self, key: str, parse: Callable[[Obj], T]) -> tuple[T, ...]:
        v = self.raw(key, False)
        if v is None:
            return ()
        if not isinstance(v, list):
            raise CatalogError(f"{self.at(key)}: expected a list, got {_type_name(v)}")
        out = []
        for i, e in enumerate(v):
            o = Obj(e, f"{self.at(key)}[{i}]")
            out.append(parse(o))
            o.close()
        return tuple(out)

    def close(self) -> None:
        unknown = [str(k) for k in self.data if str(k) not in self.seen]
        if unknown:
            known = ", ".join(sorted(self.seen))
            raise CatalogError(f"unknown key {self.at(unknown[0])} (allowed here: {known})")

    def one_of(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        v = self.text(key, default)
        if v not in allowed:
            raise CatalogError(f"{self.at(key)}: {v!r} is not one of {', '.join(allowed)}")
        return v
