"""``zero2one models list|show|promote|upgrade``: the model registry."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from zero2one.cli.output import Json, console, print_json, table

app = typer.Typer(help="Registered models, versions and aliases.", no_args_is_help=True)


@app.command("list")
def list_(json_: Json = False) -> None:
    """Registered models with their latest version and aliases."""
    from zero2one import tracking

    models = tracking.list_models()
    if json_:
        print_json(models)
        return
    if not models:
        console().print(f"no registered models yet in {tracking.tracking_uri()}")
        return
    console().print(table(None, ["name", "latest", "versions", "aliases"], [
        [m["name"], m["latest_version"], m["versions"],
         ", ".join(f"@{a}->{v}" for a, v in m["aliases"].items()) or "-"] for m in models
    ]))


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Registered model name.", show_default=False)],
    card: Annotated[bool, typer.Option(
        "--card", help="Print the model card (README.md) of --version instead.")] = False,
    version: Annotated[str, typer.Option(
        "--version", help="The version whose card --card prints (a number, an alias "
        "as @NAME, or latest).")] = "latest",
    json_: Json = False,
) -> None:
    """A registered model's versions, newest first; or one version's model card."""
    from zero2one import tracking

    if card:
        _print_card(name, version)
        return
    versions = tracking.model_versions(name)
    if json_:
        print_json(versions)
        return
    console().print(table(name, ["version", "aliases", "made from", "run id", "created"], [
        [v["version"], ", ".join(v["aliases"]) or "-",
         f"{v['conversion']} of {v['parent']}" if v.get("parent") else "training",
         v["run_id"],
         dt.datetime.fromtimestamp(v["created"] / 1000, dt.UTC).isoformat(timespec="seconds")]
        for v in versions
    ]))


@app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name.", show_default=False)],
    version: Annotated[str, typer.Argument(help="Version to point the alias at, or latest.",
                                           show_default=False)],
    alias: Annotated[str, typer.Option("--alias", "-a", help="Alias to set.")] = "champion",
    json_: Json = False,
) -> None:
    """Point an alias (default: champion) at a version: models:/NAME@ALIAS then loads it."""
    import re

    from zero2one import tracking
    from zero2one.errors import UserError

    if not re.fullmatch(r"[A-Za-z][\w-]{0,63}", alias) or re.fullmatch(r"[vV]\d+", alias):
        raise UserError(f"bad alias {alias!r}: use letters, digits, _ and -, starting with a "
                        "letter (v1, v2, ... are reserved for versions)")
    if alias.lower() == "latest":
        raise UserError("alias 'latest' is reserved: models:/NAME/latest already loads the "
                        "highest version; choose another name (champion, staging, ...)")
    if not (version.isascii() and version.isdigit()) and version != "latest":
        raise UserError(f"version must be a number or latest, got {version!r}")
    version = tracking.set_alias(name, alias, version)
    if json_:
        print_json({"name": name, "alias": alias, "version": version,
                    "model_uri": f"models:/{name}@{alias}"})
    else:
        console().print(f"models:/{name}@{alias} -> version {version}")


def _print_card(name: str, version: str) -> None:
    from zero2one.errors import ModelRefError
    from zero2one.portable import CARD
    from zero2one.refs import resolve

    ref = f"models:/{name}{version}" if version.startswith("@") else f"models:/{name}/{version}"
    resolved = resolve(ref)
    assert resolved.path is not None
    card = resolved.path / CARD
    if not card.is_file():
        raise ModelRefError(f"{ref} has no model card (saved before zero2one wrote them): "
                            f"`zero2one models upgrade {name}` adds one")
    typer.echo(card.read_text(encoding="utf-8"), nl=False)


@app.command("upgrade")
def upgrade(
    target: Annotated[str, typer.Argument(help="Registered model name (every version, or "
                                          "--version) or a model directory.",
                                          show_default=False)],
    version: Annotated[str | None, typer.Option(
        "--version", help="Only this version (a number, or latest).")] = None,
    json_: Json = False,
) -> None:
    """Give models saved before they existed the MLflow files (MLmodel, python_function flavor,
    signature, input example, requirements) and the model card. Each model is verified first;
    its manifest and weights are not changed."""
    from zero2one.portable.upgrade import upgrade as run_upgrade

    done = run_upgrade(target, version)
    if json_:
        print_json([{"ref": u.ref, "directory": str(u.directory), "files": u.files}
                    for u in done])
        return
    for u in done:
        console().print(f"{u.ref}: wrote {', '.join(u.files)}")
