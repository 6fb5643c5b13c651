"""Entry point of the `naaice` console script.

Mounts the sub-apps that each component exposes in its `cli` module (see
docs/design/contracts.md); the components keep heavy imports inside their commands."""

from __future__ import annotations

import importlib

import typer

from naaice_cli.demo import demo

app = typer.Typer(
    name="naaice",
    help="Network-Attached Accelerators on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# (module, mount name, help); a component that is absent from an install is skipped.
_SUBAPPS: tuple[tuple[str, str, str], ...] = (
    ("naaice_cluster.cli", "cluster", "Embedded Kubernetes control plane."),
    ("naa_runtime.cli", "runtime", "The software NAA (RoCEv2 RPC server) and its host client."),
    ("naa_operator.cli", "operator", "The NAAJob operator."),
    ("device_plugin.cli", "agent", "The node agent: device plugin, health, energy exporter."),
)

for _module, _name, _help in _SUBAPPS:
    try:
        _mod = importlib.import_module(_module)
    except ModuleNotFoundError as exc:
        if exc.name != _module:
            raise
        continue
    app.add_typer(_mod.app, name=_name, help=_help)
    for _extra_name in getattr(_mod, "TOP_LEVEL", ()):
        _extra = getattr(_mod, _extra_name)
        if isinstance(_extra, typer.Typer):
            app.add_typer(_extra, name=_extra_name)
        else:  # a plain command function, e.g. `naaice logs POD`
            app.command(_extra_name)(_extra)

app.command("demo")(demo)


@app.command()
def version() -> None:
    """Print the installed naaice version."""
    from importlib.metadata import version as _version

    typer.echo(_version("naaice"))
