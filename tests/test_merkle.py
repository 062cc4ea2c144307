"""Merkle batch trees: RFC 6962 vectors, every small count, and every kind of tampering."""

from __future__ import annotations

import hashlib
import random

import pytest

from node import merkle

# Certificate Transparency's reference vectors (RFC 6962 trees over these leaf inputs).
CT_LEAVES = [bytes.fromhex(x) for x in
             ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f"]]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(d: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written straight from the definition (split at the largest 2^k < n)."""
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = 1
    while k * 2 < len(d):
        k *= 2
    return _h(b"\x01" + _mth(d[:k]) + _mth(d[k:]))


def _path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n])."""
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


def _leaves(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


@pytest.mark.parametrize("n", range(1, 9))
def test_ct_reference_vectors(n: int) -> None:
    assert merkle.root(CT_LEAVES[:n]).hex() == CT_ROOTS[n - 1]


@pytest.mark.parametrize("n", range(1, 34))
def test_every_count_matches_rfc_definition(n: int) -> None:
    leaves = _leaves(n)
    root, paths = merkle.tree_paths(leaves)
    assert root == merkle.root(leaves) == _mth(leaves)
    assert len(paths) == n
    for i, leaf in enumerate(leaves):
        assert paths[i] == _path(i, leaves)
        assert merkle.root_from_path(leaf, i, n, paths[i]) == root


@pytest.mark.parametrize("n", range(1, 34))
def test_tampering_changes_the_root_or_is_refused(n: int) -> None:
    leaves = _leaves(n)
    root, paths = merkle.tree_paths(leaves)
    for i, leaf in enumerate(leaves):
        assert merkle.root_from_path(leaf + b"x", i, n, paths[i]) != root
        for j in range(len(paths[i])):
            bad = list(paths[i])
            bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
            assert merkle.root_from_path(leaf, i, n, bad) != root
        if n > 1:  # the same leaf claimed at another position
            other = (i + 1) % n
            assert not merkle_ok(root, n, (other, leaf, paths[i]))


def test_single_leaf_has_empty_path() -> None:
    root, paths = merkle.tree_paths([b"only"])
    assert paths == [[]]
    assert root == _h(b"\x00only")
    assert merkle.root_from_path(b"only", 0, 1, []) == root


def test_leaf_and_inner_hashes_are_domain_separated() -> None:
    # A two-leaf tree's root must not equal a one-leaf tree over the concatenated children.
    a, b = _h(b"\x00a"), _h(b"\x00b")
    two = merkle.root([b"a", b"b"])
    assert two == _h(b"\x01" + a + b)
    assert merkle.root([a + b]) != two
    assert merkle.leaf_hash(b"a") == a


def test_malformed_paths_are_refused() -> None:
    leaves = _leaves(5)
    _root, paths = merkle.tree_paths(leaves)
    with pytest.raises(ValueError):
        merkle.root_from_path(leaves[0], 5, 5, paths[0])  # index out of range
    with pytest.raises(ValueError):
        merkle.root_from_path(leaves[0], 0, 0, [])
    with pytest.raises(ValueError):
        merkle.root_from_path(leaves[0], 0, 5, paths[0][:-1])  # too short
    with pytest.raises(ValueError):
        merkle.root_from_path(leaves[0], 0, 5, [*paths[0], paths[0][0]])  # too long
    with pytest.raises(ValueError):
        merkle.root_from_path(leaves[0], 0, 5, [paths[0][0][:31], *paths[0][1:]])  # not a digest
    with pytest.raises(ValueError):
        merkle.root([])


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 33, 100])
def test_verify_many_equals_root_from_path(n: int) -> None:
    rng = random.Random(n)
    leaves = _leaves(n)
    root, paths = merkle.tree_paths(leaves)
    full = [(i, leaves[i], paths[i]) for i in range(n)]
    rng.shuffle(full)
    assert merkle.verify_many(root, n, full) == [True] * n
    subset = rng.sample(full, k=max(1, n // 3))
    assert merkle.verify_many(root, n, subset) == [True] * len(subset)
    assert merkle.verify_many(_h(b"other root"), n, full) == [False] * n


@pytest.mark.parametrize("n", [2, 5, 8, 33])
def test_verify_many_names_exactly_the_bad_items(n: int) -> None:
    rng = random.Random(n)
    leaves = _leaves(n)
    root, paths = merkle.tree_paths(leaves)
    for _ in range(20):
        items = [(i, leaves[i], list(paths[i])) for i in range(n)]
        bad = set(rng.sample(range(n), k=rng.randint(1, min(3, n))))
        for j in bad:
            kind = rng.choice(["leaf", "path", "index", "short"])
            index, leaf, path = items[j]
            if kind == "leaf":
                items[j] = (index, leaf + b"!", path)
            elif kind == "path" and path:
                k = rng.randrange(len(path))
                path[k] = bytes([path[k][0] ^ 0x80]) + path[k][1:]
            elif kind == "index":
                items[j] = ((index + 1) % n, leaf, path)
            else:
                items[j] = (index, leaf, path[:-1] if path else [root])
        got = merkle.verify_many(root, n, items)
        want = [merkle_ok(root, n, it) for it in items]
        assert got == want
        assert not any(got[j] for j in bad)


def merkle_ok(root: bytes, n: int, item: tuple[int, bytes, list[bytes]]) -> bool:
    try:
        return merkle.root_from_path(item[1], item[0], n, item[2]) == root
    except ValueError:
        return False


def test_verify_many_out_of_range_index() -> None:
    leaves = _leaves(4)
    root, paths = merkle.tree_paths(leaves)
    assert merkle.verify_many(root, 4, [(4, leaves[0], paths[0]), (-1, leaves[0], paths[0])]) == [False, False]
