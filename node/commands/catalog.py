"""``credit-node catalog``: check a catalogue, write reporting templates."""

from __future__ import annotations

import pathlib

import click

from node.cli import cli, emit_json, handle_errors, report


@cli.group()
def catalog() -> None:
    """The catalogue of credit information items."""


@catalog.command("validate")
@click.argument("path", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def validate(path: str, as_json: bool) -> None:
    """Check a catalogue (refuses prohibited personal fields); exit 2 naming item and field."""
    from node.catalog import load_catalog

    cat = load_catalog(pathlib.Path(path))
    if as_json:
        emit_json({"version": cat.version, "items": sorted(cat.items)})
    else:
        click.echo(f"catalogue {cat.version}: {len(cat.items)} items OK ({', '.join(sorted(cat.items))})")


@catalog.command("template")
@click.argument("item")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default="csv", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--catalog", "catalog_path", type=click.Path(exists=True),
              help="catalogue directory (default: the node's, or the bundled one)")
@click.option("--force", is_flag=True, help="replace FILE if it exists")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def template(ctx: click.Context, item: str, fmt: str, out: str, catalog_path: str | None, force: bool,
             as_json: bool) -> None:
    """Write the reporting template of ITEM with the Chinese field names as headers."""
    from node.catalog import load_catalog
    from node.errors import UsageError
    from node.provisioning import bundled_catalog
    from node.templates import write_template

    # --out is often a department's filled-in workbook of the same name: never replaced unasked.
    if not force and pathlib.Path(out).exists():
        raise UsageError(f"{out} already exists (give --force to replace it)", field="out")

    path = pathlib.Path(catalog_path) if catalog_path else None
    if path is None and ctx.obj.get("config_path"):
        from node.config import load_config

        cfg = load_config(ctx.obj["config_path"])
        path = cfg.path(cfg.catalog.path)
    cat = load_catalog(path or bundled_catalog())
    write_template(cat.item(item), fmt, pathlib.Path(out))  # type: ignore[arg-type]
    report(as_json, {"item": item, "format": fmt, "out": out}, f"wrote {out}")
