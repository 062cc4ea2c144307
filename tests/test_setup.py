"""The package as built: what a department system installing it to push records gets."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import zipfile

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_the_built_package_tells_type_checkers_both_packages_are_typed(tmp_path: pathlib.Path) -> None:
    # Without the marker a department's mypy treats adapters.api_client (Pusher, RowAck) as untyped.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"node/py.typed", "adapters/py.typed"} <= names
