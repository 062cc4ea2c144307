"""Department front-end adapters (前置机): how a source unit's own systems report to its node.

``file_drop`` (a folder of CSV/XLSX files), ``database`` (a published table or view, pulled) and
``api_client`` (department systems that push over gRPC). Each is a ``Source`` (``adapters.base``)
that the node runs from its configuration (``credit-node --config FILE start``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.base import Sink, Source, SourceRunner

if TYPE_CHECKING:
    from collections.abc import Callable

    from adapters.file_drop import FileOutcome
    from node.app import Node

__all__ = ["Sink", "Source", "SourceRunner", "build_runners", "build_sources"]


def build_sources(node: Node, *, sink: Sink | None = None, names: tuple[str, ...] = (),
                  on_file: Callable[[FileOutcome], None] | None = None) -> list[Source]:
    """The configured adapters of ``node`` (those named in ``names``, if given), ready to poll.

    ``on_file`` hears what became of each file a file drop took in (``credit-node adapters run``
    reports the failed ones).
    """
    from adapters.database import DatabasePull
    from adapters.file_drop import FileDrop
    from node.config import FileAdapterConfig, adapter_name
    from node.errors import UsageError

    target: Sink = sink if sink is not None else node.ingest  # type: ignore[assignment]
    known = [adapter_name(a) for a in node.config.adapters]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"no adapter named {', '.join(unknown)} (configured: {', '.join(known) or 'none'})")
    sources: list[Source] = []
    for i, (cfg, name) in enumerate(zip(node.config.adapters, known, strict=True)):
        if names and name not in names:
            continue
        if isinstance(cfg, FileAdapterConfig):
            folder = node.config.path(cfg.dir)
            folder.mkdir(parents=True, exist_ok=True)
            sources.append(FileDrop(cfg, directory=folder, catalog=node.catalog, sink=target, name=name,
                                    on_file=on_file))
        else:
            sources.append(DatabasePull(cfg, catalog=node.catalog, sink=target, state=node.store.meta, name=name,
                                        workers=node.prepare_worker, setting=f"adapters[{i}]"))
    return sources


def build_runners(node: Node) -> list[SourceRunner]:
    """One runtime extension per configured adapter (``node.app.build_runtime`` adds them)."""
    return [SourceRunner(s) for s in build_sources(node)]
