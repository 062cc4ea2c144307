"""The docs name real files: a module renamed or split leaves no newcomer following a dead path."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PATH = re.compile(r"\b(?:node|adapters|scripts|tests|protos|exchange_config|docs|certs)/[\w./-]*\w\.(?:py|proto|yaml|md)\b")
MODULE = re.compile(r"(?<![\w/.-])(?:[a-z_]+/)?[a-z_]+\.py\b")
PACKAGES = ("node", "node/transport", "node/store", "node/lifecycle", "node/commands", "node/demo", "adapters",
            "scripts", "tests")


def test_every_path_the_docs_name_exists() -> None:
    missing = {f"{doc.relative_to(ROOT)}: {p}" for doc in DOCS for p in PATH.findall(doc.read_text(encoding="utf-8"))
               if not (ROOT / p).exists()}
    assert not missing, sorted(missing)


def test_every_module_the_architecture_names_is_in_the_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    names = set(MODULE.findall(text))
    assert len(names) > 20  # the map names the modules, not just a few
    missing = sorted(n for n in names if not any((ROOT / pkg / n).exists() for pkg in ("", *PACKAGES)))
    assert not missing, missing


def test_every_module_of_the_package_is_named_in_the_architecture() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = {m.rsplit("/", 1)[-1] for m in MODULE.findall(text)} | {p.rsplit("/", 1)[-1] for p in PATH.findall(text)}
    modules = [p for pkg in ("node", "adapters") for p in sorted((ROOT / pkg).rglob("*.py"))
               if p.name not in ("__init__.py", "__main__.py") and "_generated" not in p.parts
               and "migrations" not in p.parts]
    assert len(modules) > 100
    unnamed = sorted(str(p.relative_to(ROOT)) for p in modules if p.name not in named)
    assert not unnamed, unnamed
