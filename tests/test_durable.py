import os
import pathlib
import stat

import pytest

from node.durable import sync_dir, write_synced


def test_a_synced_file_has_its_mode_from_creation_and_its_contents(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "node.yaml"
    write_synced(path, b"store: {url: x}\n", 0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "store: {url: x}\n"


def test_a_synced_write_never_replaces_an_existing_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "ca-key.pem"
    path.write_bytes(b"kept")
    with pytest.raises(FileExistsError):
        write_synced(path, b"other", 0o600)
    assert path.read_bytes() == b"kept"


def test_syncing_a_directory_that_is_gone_fails_loudly(tmp_path: pathlib.Path) -> None:
    sync_dir(tmp_path)  # an existing one: no error
    with pytest.raises(FileNotFoundError):
        sync_dir(tmp_path / "missing")
    assert os.listdir(tmp_path) == []
