"""node/provisioning.py: a node directory is laid out whole, or can be laid out again."""

from __future__ import annotations

import pathlib

import pytest

from node import identity, provisioning
from node.config import load_config
from node.errors import UsageError

UNIT = "11330102MB0000019G"


class Killed(BaseException):
    """Stands for the process dying at this point (nothing after it runs)."""


def _init(directory: pathlib.Path) -> pathlib.Path:
    return provisioning.init_node(directory, node_id="dept:330102:scjgj", level="department", unit=UNIT)


@pytest.mark.parametrize("dies_at", range(1, 9))  # 7 key and certificate files, then node.yaml
def test_an_init_that_died_half_way_can_simply_be_run_again(tmp_path: pathlib.Path, monkeypatch, dies_at: int):
    writes = {"n": 0}
    real_write = identity._write_atomic

    def write(path: pathlib.Path, data: bytes, mode: int) -> None:
        writes["n"] += 1
        if writes["n"] == dies_at:
            raise Killed
        real_write(path, data, mode)

    monkeypatch.setattr(identity, "_write_atomic", write)
    real_replace = provisioning.os.replace

    def replace(src: object, dst: object) -> None:
        if writes["n"] + 1 == dies_at:  # the last step: node.yaml takes its place
            raise Killed
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(provisioning.os, "replace", replace)
    with pytest.raises(Killed):
        _init(tmp_path / "n")
    assert not (tmp_path / "n" / "node.yaml").exists()
    monkeypatch.setattr(identity, "_write_atomic", real_write)
    monkeypatch.setattr(provisioning.os, "replace", real_replace)
    config = load_config(_init(tmp_path / "n"))
    assert config.id == "dept:330102:scjgj"
    assert sorted(p.name for p in (tmp_path / "n").iterdir()) == ["ca", "identity", "node.db", "node.yaml"]
    for key in ("identity/key.pem", "identity/signing-key.pem", "ca/ca-key.pem"):
        assert (tmp_path / "n" / key).stat().st_mode & 0o077 == 0
    assert identity.load_identity(tmp_path / "n" / "identity").node_id == "dept:330102:scjgj"


def test_a_finished_node_directory_is_never_laid_out_again(tmp_path: pathlib.Path):
    _init(tmp_path / "n")
    with pytest.raises(UsageError) as caught:
        _init(tmp_path / "n")
    assert "exists already" in caught.value.message


def test_an_identity_directory_put_there_by_someone_else_is_not_replaced(tmp_path: pathlib.Path):
    (tmp_path / "n" / "identity").mkdir(parents=True)
    (tmp_path / "n" / "identity" / "key.pem").write_text("someone's key")
    with pytest.raises(UsageError) as caught:
        _init(tmp_path / "n")
    assert "not empty" in caught.value.message
    assert (tmp_path / "n" / "identity" / "key.pem").read_text() == "someone's key"


def test_an_identity_of_another_node_left_there_is_not_taken_over(tmp_path: pathlib.Path):
    ca = identity.init_ca(tmp_path / "ca")
    identity.issue(ca, "dept:330102:other", "node", tmp_path / "n" / "identity")
    with pytest.raises(UsageError):
        provisioning.init_node(tmp_path / "n", node_id="dept:330102:scjgj", level="department", unit=UNIT, ca_dir=ca)


def test_the_config_and_the_store_are_the_owners_alone(tmp_path: pathlib.Path) -> None:
    # node.yaml may hold the store's password (--store postgresql://user:password@…), and the store
    # every record unmasked (class C, ID numbers), the query log and the authorisations.
    old = __import__("os").umask(0o022)
    try:
        provisioning.init_node(tmp_path / "n", node_id="city:330100", level="city")
    finally:
        __import__("os").umask(old)
    for name in ("node.yaml", "node.db"):
        assert (tmp_path / "n" / name).stat().st_mode & 0o077 == 0, name
