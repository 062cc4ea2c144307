"""Strict YAML reading for the files operators write: a key given twice in one mapping is refused.

PyYAML keeps the last of two equal keys without a word, so a node config or a catalogue item
with a key pasted twice would silently run with whichever came last. :func:`load_strict` raises
:class:`DuplicateKeyError` naming the dotted path of the key and both lines; callers turn it into
their own error (``E_CONFIG``, ``E_CATALOG``). Merge keys (``<<``) may still be overridden by an
explicit key, which is what they are for.

An integer is one only as plain decimal digits: YAML 1.1 would read ``010`` as 8 (octal),
``1:30`` as 90 (base 60), ``0x1F`` and ``1_000`` as numbers too, and an enum code or a unit
written so would change without a word. Those stay the text they are.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

__all__ = ["DuplicateKeyError", "load_strict"]

# libyaml's parser where PyYAML has it: ten times faster, and every process that validates
# (the node, its import worker) reads the whole catalogue at start. Construction stays Python.
_BASE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_DECIMAL = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")


def _resolvers(keep: set[str] | None) -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """The implicit resolvers of the safe loader, integers as plain decimals only.

    ``keep`` limits the other tags resolved (``None``: all of them).
    """
    base: dict[Any, list[tuple[str, re.Pattern[str]]]] = _BASE.yaml_implicit_resolvers
    out: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    for first, entries in base.items():
        kept = [(tag, rx) for tag, rx in entries if tag != _INT_TAG and (keep is None or tag in keep)]
        if kept:
            out[first] = kept
    if keep is None or _INT_TAG in keep:
        for first in "-+0123456789":
            out.setdefault(first, []).append((_INT_TAG, _DECIMAL))
    return out


class DuplicateKeyError(ValueError):
    """A mapping names the same key twice; ``path`` is the dotted path of that key."""

    def __init__(self, path: str, first_line: int, second_line: int) -> None:
        super().__init__(f"{path}: key given twice (lines {first_line} and {second_line})")
        self.path = path
        self.first_line = first_line
        self.second_line = second_line


class _Duplicate(Exception):
    """Raised inside construction, before the path of the mapping is known."""

    def __init__(self, mapping: MappingNode, key: object, first: Node, second: Node) -> None:
        super().__init__(key)
        self.mapping, self.key, self.first, self.second = mapping, key, first, second


def _path_to(root: Node, target: MappingNode) -> str | None:
    """The dotted path of ``target`` inside ``root`` (``fields[3]``), or None if it is not there."""
    stack: list[tuple[Node, str]] = [(root, "")]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if id(node) in seen:  # an alias points back at a node already walked
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key.value, str) else "?"
                stack.append((value, f"{path}.{name}" if path else name))
        elif isinstance(node, SequenceNode):
            stack.extend((value, f"{path}[{i}]") for i, value in enumerate(node.value))
    return None


class StrictLoader(_BASE):  # type: ignore[misc]
    """The safe loader, refusing a mapping that gives the same key twice."""

    yaml_implicit_resolvers = _resolvers(None)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            first: dict[Any, Node] = {}
            for key_node, _value in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in first:
                        raise _Duplicate(node, key, first[key], key_node)
                    first[key] = key_node
                except TypeError:  # an unhashable key: the base constructor says so itself
                    pass
        result: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return result

    def construct_document(self, node: Node) -> Any:
        try:
            return super().construct_document(node)
        except _Duplicate as dup:
            where = _path_to(node, dup.mapping)
            name = str(dup.key)
            name = name if len(name) <= 40 else name[:37] + "..."  # the file may not be ours: no long echo
            path = f"{where}.{name}" if where else name
            raise DuplicateKeyError(path, dup.first.start_mark.line + 1, dup.second.start_mark.line + 1) from None


class _TextLoader(StrictLoader):
    """Every plain scalar but null is the text written: the reader's types decide what it is."""

    yaml_implicit_resolvers = _resolvers({_MERGE_TAG, "tag:yaml.org,2002:null"})


def load_strict(text: str, *, typed: bool = True) -> Any:
    """The one YAML document in ``text``; :class:`DuplicateKeyError` for a key given twice.

    ``typed=False`` reads every plain scalar but null (``~``, empty) as text, for a reader that
    converts by declared types (the node's configuration): ``no`` under a name is then ``'no'``,
    not False, and ``1.10`` is ``'1.10'``.
    """
    return yaml.load(text, Loader=StrictLoader if typed else _TextLoader)


def yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """``exc`` in one line: the problem and where, never the excerpt PyYAML quotes (the file may
    not be ours), and what a tab there means, which PyYAML's words do not say."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    hint = ""
    if mark is not None:
        line = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
        if "\t" in line[:mark.column + 1]:
            hint = ": a tab, which YAML does not take for indentation; indent with spaces"
    return f"not valid YAML: {getattr(exc, 'problem', None) or 'cannot be parsed'}{where}{hint}"
