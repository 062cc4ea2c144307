"""``credit-node init``: lay out a working node directory (config, dev CA, certificates).

A node directory holds ``node.yaml``, ``identity/`` (its certificates; private keys 0600) and, when
no CA was given, ``ca/`` with a development CA. Production deployments pass ``--ca`` pointing at
the federation CA's issuing directory instead (or install certificates issued elsewhere).
"""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
from collections.abc import Callable

import yaml

from node import identity
from node.config import LEVELS, parse_config
from node.durable import sync_dir, write_synced
from node.errors import NodeError, UsageError
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
    try:
        named = level_of(node_id)
    except NodeError as exc:  # a caller's id (gov:…): the operator's --id, not a configuration, is at fault
        raise UsageError(f"--id: {exc.message}", field="id") from None
    if named != level:
        raise UsageError(f"node id {node_id!r} names level {named!r}, not {level!r}", field="id")
    if level == "department" and not unit:
        raise UsageError("a department node needs --unit (the USCC of the source unit it reports for)",
                         field="unit")
    if unit and (problem := check_uscc(unit.strip().upper(), label="--unit")) is not None:
        raise UsageError(problem.message, field="unit")
    _check_start_settings(listen, catalog_path)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "node.yaml"
    if config_path.exists():
        raise UsageError(f"{config_path} exists already; refusing to overwrite a node's configuration")
    for stale in directory.glob(f"{_STAGING}*"):  # left by an init killed half-way: never used
        shutil.rmtree(stale, ignore_errors=True)
    if ca_dir is None:
        ca_dir = directory / "ca"
        if not (ca_dir / identity.CA_CERT).exists():
            _staged(directory / "ca", identity.init_ca)
    issuer = ca_dir
    if not _finished_identity(directory / "identity", node_id, issuer):
        _staged(directory / "identity", lambda d: identity.issue(issuer, node_id, "node", d, hosts=hosts))
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
    config = parse_config(data, base_dir=str(directory))  # refuse to write a config the node cannot load
    # Other commands refuse a SQLite store in a directory that does not exist (a typo): init makes it.
    from node.store.engine import missing_store_directory  # SQLAlchemy: only init needs it here

    if (store_file := missing_store_directory(config.store_url)) is not None:
        store_file.parent.mkdir(parents=True, exist_ok=True)
    if config.store_url.startswith("sqlite"):
        # The node's own file, made with its schema now: the first import (or start) does not load
        # Alembic (~10 MB of its memory) to create it. A server database is the operator's to
        # reach: it is migrated when the node first opens it.
        _create_store(config.store_url)
    # Last, and whole or not at all: a node directory with a node.yaml is a finished one.
    tmp = directory / f"{_STAGING}node.yaml"
    tmp.unlink(missing_ok=True)  # one a killed init left
    # The owner's alone: store.url may carry the database's password.
    write_synced(tmp, yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode("utf-8"), 0o600)
    os.replace(tmp, config_path)
    sync_dir(directory)
    return config_path


def _check_start_settings(listen: str, catalog_path: pathlib.Path | None) -> None:
    """Refuse, before anything is made, a --listen or --catalog that `start` would refuse: a node
    init called written would otherwise fail only when first started."""
    from node.catalog import load_catalog
    from node.errors import CatalogError
    from node.hostnames import split_host_port

    try:
        split_host_port(listen)
    except NodeError:
        raise UsageError(f"--listen {listen!r} is not HOST:PORT (a port 0-65535; 0 = any free one)",
                         field="listen") from None
    if catalog_path is not None:
        try:
            load_catalog(catalog_path)
        except CatalogError as exc:
            raise CatalogError(f"--catalog: {exc.message}", field="catalog", code=exc.code) from None


def _create_store(url: str) -> None:
    from node.store.engine import migrate, open_engine

    engine = open_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()


# Where init builds each part before it takes its place, so that a kill at any moment leaves each
# part whole or absent and the same init can simply be run again.
_STAGING = ".init-"


def _finished_identity(directory: pathlib.Path, node_id: str, ca_dir: pathlib.Path) -> bool:
    """Whether an init of this node, killed before its node.yaml, left its identity whole (then it
    is kept: it is the one this init would make)."""
    if not (directory / identity.CA_CERT).exists():
        return False
    try:
        loaded = identity.load_identity(directory)
        same_ca = loaded.ca_pem == (ca_dir / identity.CA_CERT).read_bytes()
    except (NodeError, OSError):
        return False
    return loaded.node_id == node_id and loaded.role == "node" and same_ca


def _staged(target: pathlib.Path, make: Callable[[pathlib.Path], object]) -> None:
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} exists already and is not empty; init builds it itself: remove it or init "
                         "into a new directory", field="directory")
    staging = target.with_name(f"{_STAGING}{target.name}-{secrets.token_hex(4)}")
    make(staging)
    if target.exists():
        target.rmdir()  # empty
    os.rename(staging, target)  # atomic: the part appears whole
