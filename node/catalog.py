"""The catalogue (DESIGN §2.7): versioned YAML naming the items a node exchanges, and their rules.

A catalogue is a directory holding ``catalog.yaml`` (``version``, ``authority``, ``description``)
and one YAML file per item, or a single file with those keys and an ``items`` mapping. How to
author one: docs/catalogue.md. Loading refuses unknown keys, wrong types, duplicates, references to
undeclared fields, natural persons in class A without a legal basis, and personal information the
law forbids collecting (:class:`~node.errors.ProhibitedFieldError`).
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import yaml

from node.catalog_model import (
    CROSS_RULE_KINDS,
    DISCLOSURE_CLASSES,
    DISCLOSURE_KINDS,
    FIELD_TYPES,
    LEVELS_UP,
    SUBJECT_CODE,
    SUBJECT_KINDS,
    Catalog,
    Condition,
    CrossRule,
    DisclosureRule,
    FieldSpec,
    Item,
    Routing,
    Severity,
    normalize_header,
)
from node.catalog_reader import Obj
from node.catalog_schema import parse_item
from node.errors import CatalogError
from node.yamlfile import DuplicateKeyError, load_strict, yaml_problem

__all__ = [
    "CROSS_RULE_KINDS",
    "DISCLOSURE_CLASSES",
    "DISCLOSURE_KINDS",
    "FIELD_TYPES",
    "LEVELS_UP",
    "SUBJECT_CODE",
    "SUBJECT_KINDS",
    "Catalog",
    "Condition",
    "CrossRule",
    "DisclosureRule",
    "FieldSpec",
    "Item",
    "Routing",
    "Severity",
    "check_catalog",
    "load_catalog",
    "normalize_header",
    "parse_catalog",
    "template_headers",
]

META_FILE = "catalog.yaml"
# fullmatch: "$" would let a final "\n" in
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _read_yaml(path: pathlib.Path) -> Any:
    """The parsed content of one catalogue file; errors name it as the catalogue does (``name``)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CatalogError(f"cannot read {path.name}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{path.name}: not UTF-8 text") from None
    return parse_yaml(path.name, text)


def parse_yaml(name: str, text: str) -> Any:
    """The YAML document ``text`` of the catalogue file ``name``, or a CatalogError naming it."""
    try:
        return load_strict(text)
    except DuplicateKeyError as exc:
        raise CatalogError(f"{name}: {exc}", field=exc.path) from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{name}: {yaml_problem(exc, text)}") from None
    except ValueError as exc:  # PyYAML building a value it recognised: 2026-13-01 as a date
        raise CatalogError(f"{name}: a value cannot be read ({exc}); quote it if it is text") from None


def _items_of(doc: Obj) -> list[tuple[str, Any]]:
    """(code, body) of each entry of a document's ``items`` mapping."""
    items = doc.raw("items", False)
    if items is None:
        return []
    entries = Obj(items, "items")
    out = []
    for code, body in entries.data.items():
        if isinstance(body, Mapping) and body.get("code", code) != code:
            raise CatalogError(f"items.{code}.code: {body.get('code')!r} differs from its key {code!r}")
        out.append((str(code), {"code": code, **body} if isinstance(body, Mapping) else body))
    return out


def parse_catalog(documents: list[tuple[str, Any]]) -> Catalog:
    """Build a catalogue from parsed YAML documents ``(source name, data)``: the first holds the
    metadata (``version`` …, optionally ``items``); each other one is an item or has ``items``."""
    if not documents:
        raise CatalogError("empty catalogue")
    items: dict[str, Any] = {}
    origin: dict[str, str] = {}
    version = authority = description = ""
    for n, (source, data) in enumerate(documents):
        try:
            doc = Obj(data if data is not None else {}, "")  # in the try: its refusal names the file
            if n == 0:
                version = doc.text("version")
                if not VERSION_RE.fullmatch(version):
                    # Every record carries it and a signed release names it: a release name or nothing.
                    raise CatalogError(f"version: {version[:40]!r} is no release name (1-64 letters, digits, "
                                       "'.', '_' or '-', beginning with a letter or digit)", field="version")
                authority = doc.text("authority", "")
                description = doc.text("description", "")
                bodies = _items_of(doc)
            elif "items" in doc.data:
                bodies = _items_of(doc)
            else:
                code = doc.data.get("code")
                if not isinstance(code, str):
                    raise CatalogError("code: an item file needs the item's code")
                bodies = [(code, data)]
                doc.seen.update(str(k) for k in doc.data)
            doc.close()
            for code, body in bodies:
                if code in items:
                    raise CatalogError(f"items.{code}: item defined twice (also in {origin[code]})")
                items[code] = parse_item(Obj(body, f"items.{code}"))
                origin[code] = source
        except CatalogError as exc:
            raise type(exc)(f"{source}: {exc.message}", field=exc.field) from None
    if not items:
        raise CatalogError(f"{documents[0][0]}: the catalogue defines no items")
    return Catalog(version=version, items=items, authority=authority, description=description)


def load_catalog(path: str | os.PathLike[str]) -> Catalog:
    """Load a catalogue directory (``catalog.yaml`` + ``*.yaml``) or a single catalogue file."""
    p = pathlib.Path(path)
    if p.is_dir():
        meta = p / META_FILE
        if not meta.is_file():
            raise CatalogError(f"{p}: a catalogue directory needs {META_FILE} (version, authority)")
        files = [meta, *sorted(f for f in p.glob("*.yaml") if f.name != META_FILE)]
    elif p.is_file():
        files = [p]
    else:
        raise CatalogError(f"no catalogue at {p}")
    return parse_catalog([(f.name, _read_yaml(f)) for f in files])


def check_catalog(catalog: Catalog) -> list[str]:
    """Advice on a catalogue that loads: things that are lawful but probably unintended."""
    notes = []
    for item in catalog.items.values():
        for f in item.fields:
            if f.type in ("string", "code") and not f.max_length:
                notes.append(f"{item.code}.{f.code}: a {f.type} field without max_length")
        if "natural_person" in item.subject_kinds and item.disclosure_class == "A":
            notes.append(f"{item.code}: natural persons disclosed as class A under {item.legal_basis}")
        if item.is_list and item.disclosure.kind != "while_listed":
            notes.append(f"{item.code}: a list item whose disclosure is {item.disclosure.kind}")
    return notes


def template_headers(item: Item) -> list[str]:
    """The Chinese column headers of a reporting template, in catalogue order."""
    return [f.name for f in item.fields]
