"""``credit-node init``: lay out a working node directory (config, dev CA, certificates).

A node directory holds ``node.yaml``, ``identity/`` (its certificates; private keys 0600) and, when
no CA was given, ``ca/`` with a development CA. Production deployments pass ``--ca`` pointing at
the federation CA's issuing directory instead (or install certificates issued elsewhere).
"""

from __future__ import annotations

import pathlib

import yaml

from node import identity
from node.config import LEVELS, parse_config
from node.errors import UsageError
from node.identifiers import check_uscc
from node.routing import level_of


def bundled_catalog() -> pathlib.Path:
    """The catalogue shipped in the source tree (exchange_config/catalog)."""
    return pathlib.Path(__file__).resolve().parent.parent / "exchange_config" / "catalog"


def init_node(directory: pathlib.Path, *, node_id: str, level: str, unit: str = "",
              store_url: str = "", ca_dir: pathlib.Path | None = None,
              catalog_path: pathlib.Path | None = None, listen: str = "127.0.0.1:0",
              hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> pathlib.Path:
    if level not in LEVELS:
        raise UsageError(f"--level must be one of {', '.join(LEVELS)}", field="level")
    if level_of(node_id) != level:
        raise UsageError(f"node id {node_id!r} names level {level_of(node_id)!r}, not {level!r}", field="id")
    if level == "department" and not unit:
        raise UsageError("a department node needs --unit (the USCC of the source unit it reports for)",
                         field="unit")
    if unit and (problem := check_uscc(unit.strip().upper(), label="--unit")) is not None:
        raise UsageError(problem.message, field="unit")
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "node.yaml"
    if config_path.exists():
        raise UsageError(f"{config_path} exists already; refusing to overwrite a node's configuration")
    if ca_dir is None:
        ca_dir = directory / "ca"
        if not (ca_dir / "ca.pem").exists():
            identity.init_ca(ca_dir)
    identity.issue(ca_dir, node_id, "node", directory / "identity", hosts=hosts)
    catalog = catalog_path or bundled_catalog()
    data: dict[str, object] = {
        "id": node_id,
        "level": level,
        "identity": {"dir": "identity"},
        "store": {"url": store_url or "sqlite:///node.db"},
        "catalog": {"path": str(catalog.resolve())},
        "server": {"listen": listen},
    }
    if unit:
        data["unit"] = unit
    parse_config(data, base_dir=str(directory))  # refuse to write a config the node cannot load
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return config_path
