"""Merkle trees over batches of leaves (DESIGN §2.3), RFC 6962 / RFC 9162 shape.

Hashes are SHA-256 with domain separation, so a leaf can never be passed off as an inner node:

    leaf hash  = H(0x00 || leaf data)
    inner hash = H(0x01 || left || right)

A level with an odd number of nodes promotes its last node unchanged to the next level. Built
bottom-up this way the tree is exactly RFC 6962's (split at the largest power of two below n), so
inclusion paths verify with the RFC's algorithm and hold no placeholder for promoted nodes.

:func:`root` and :func:`tree_paths` serve the signer of a batch; :func:`root_from_path` checks
one leaf; :func:`verify_many` checks many leaves of one batch with far fewer hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["DIGEST_SIZE", "leaf_hash", "root", "root_from_path", "tree_paths", "verify_many"]

DIGEST_SIZE = 32
_LEAF = b"\x00"
_NODE = b"\x01"
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(_LEAF + data).digest()


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaf hashes first, the root alone last."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    level = [_sha256(_LEAF + d).digest() for d in leaves]
    levels = [level]
    while len(level) > 1:
        up = [_sha256(_NODE + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            up.append(level[-1])  # promoted: no sibling at this level, so no path element either
        levels.append(up)
        level = up
    return levels


def root(leaves: Sequence[bytes]) -> bytes:
    """Root of the tree over ``leaves`` (leaf data, hashed here). Raises ValueError if empty."""
    return _levels(leaves)[-1][0]


def tree_paths(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root and the inclusion path (sibling hashes, leaf to root) of every leaf.

    Hashing is O(n): the tree is built once, and the paths are read off its levels top-down,
    each node's path being its sibling plus its parent's path, so no subtree is ever rebuilt.
    """
    levels = _levels(leaves)
    return levels[-1][0], [list(p) for p in _paths(levels)]


def _paths(levels: list[list[bytes]]) -> list[tuple[bytes, ...]]:
    above: list[tuple[bytes, ...]] = [()]  # the root's path
    for level in reversed(levels[:-1]):
        width = len(level)
        # A promoted node (last of an odd level) has no sibling: its path is its parent's.
        # (x,) + t, not (x, *t): half the cost, and this runs once per node.
        above = [(level[i ^ 1],) + above[i >> 1] if i ^ 1 < width else above[i >> 1]
                 for i in range(width)]
    return above


def root_from_path(leaf: bytes, index: int, count: int, path: Sequence[bytes]) -> bytes:
    """The root implied by ``leaf`` (data) at ``index`` of ``count`` leaves and its ``path``.

    RFC 9162 §2.1.3.2. Raises ValueError when the path cannot belong to such a tree (index out of
    range, too few or too many elements, an element that is not a digest), so a forged path can
    never be mistaken for a short one. Comparing the result with the signed root is the caller's.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"leaf index {index} is outside a tree of {count} leaves")
    h = _sha256(_LEAF + leaf).digest()
    fn, sn = index, count - 1
    for p in path:
        if sn == 0:
            raise ValueError("inclusion path is longer than the tree is deep")
        if len(p) != DIGEST_SIZE:
            raise ValueError("inclusion path element is not a SHA-256 digest")
        if fn & 1 or fn == sn:
            h = _sha256(_NODE + p + h).digest()
            while not fn & 1 and fn != 0:  # skip the levels where this node was promoted
                fn >>= 1
                sn >>= 1
        else:
            h = _sha256(_NODE + h + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("inclusion path is shorter than the tree is deep")
    return h


def verify_many(expected_root: bytes, count: int,
                items: Sequence[tuple[int, bytes, Sequence[bytes]]]) -> list[bool]:
    """For each ``(index, leaf, path)`` of one tree: does ``path`` prove ``leaf`` under the root?

    Exactly ``root_from_path(leaf, index, count, path) == expected_root`` for each item, but cheap
    for many leaves of one batch (a verifier's hot path, where a 5,000-leaf path is 13 hashes):

    - when the items are the whole batch, each index once (the usual case: a batch forwarded as
      it was signed), the tree is rebuilt from the leaves with about two hashes a leaf and each
      path is compared with the rebuilt one;
    - otherwise, or if that fails (then some items are bad and each must get its own answer),
      items are checked one by one, sharing the nodes already proven (see :class:`_ProvenNodes`).
    """
    if count >= 1 and len(items) == count:
        ordered: Sequence[tuple[int, bytes, Sequence[bytes]]] = items
        if any(item[0] != i for i, item in enumerate(items)):  # usually in order already
            ordered = sorted(items, key=lambda item: item[0])
        if all(item[0] == i for i, item in enumerate(ordered)):
            levels = _levels([item[1] for item in ordered])
            if levels[-1][0] == expected_root:
                expected = _paths(levels)
                return [tuple(path) == expected[index] for index, _leaf, path in items]
    proven = _ProvenNodes(expected_root, count)
    return [proven.verify(index, leaf, path) for index, leaf, path in items]


class _ProvenNodes:
    """Checks inclusion paths one by one, remembering every node already proven under the root.

    Once one leaf's path has led to the root, every node on it and every sibling it named is
    proven, together with the path from there up. A later leaf stops hashing as soon as it reaches
    a proven node whose hash *and* remaining path equal its own: the rest of its computation would
    repeat one already done, so the answer is exactly ``root_from_path(...) == root``. Leaves of
    one batch then cost about two hashes each instead of log2 n.
    """

    def __init__(self, expected_root: bytes, count: int) -> None:
        self._root = expected_root
        self._count = count
        self._proven: dict[tuple[int, int], tuple[bytes, tuple[bytes, ...]]] = {}  # (level, index) ->

    def verify(self, index: int, leaf: bytes, path: Sequence[bytes]) -> bool:
        if self._count < 1 or not 0 <= index < self._count:
            return False
        proven = self._proven
        pt = tuple(path)
        h = _sha256(_LEAF + leaf).digest()
        # The walk of root_from_path, by explicit level and index so that nodes can be named.
        steps: list[tuple[int, int, bytes, int, bytes | None]] = []  # level, index, hash, path pos, sibling
        level, idx, width, p = 0, index, self._count, 0
        while width > 1:
            known = proven.get((level, idx))
            if known is not None and known[0] == h and known[1] == pt[p:]:
                break
            sib: bytes | None = None
            if idx ^ 1 < width:  # has a sibling at this level (else promoted: no path element)
                if p >= len(pt) or len(pt[p]) != DIGEST_SIZE:
                    return False
                sib = pt[p]
            steps.append((level, idx, h, p, sib))
            if sib is not None:
                h = _sha256(_NODE + sib + h).digest() if idx & 1 else _sha256(_NODE + h + sib).digest()
                p += 1
            level, idx, width = level + 1, idx >> 1, (width + 1) >> 1
        else:
            if p != len(pt) or h != self._root:
                return False
        for lv, i, node, pos, sibling in steps:
            rest = pt[pos:]
            proven[(lv, i)] = (node, rest)
            if sibling is not None:  # the sibling's own path starts with us, then shares ours
                proven[(lv, i ^ 1)] = (sibling, (node,) + rest[1:])  # noqa: RUF005 - faster
        return True
