"""`naaice runtime …`: run a software NAA (`serve`) and talk to its management API (`flash`,
`scrub`, `health`, `sensors`).

Mounted by `naaice_cli.main`. Heavy imports (numpy, aiohttp, the data plane) happen inside
the commands so that `naaice --help` stays fast. Every flag has an env twin `NAAICE_<FLAG>`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from naa_runtime.apps.cli import train_app

if TYPE_CHECKING:
    from naa_runtime.management.client import ManagementClient

app = typer.Typer(
    help="The software NAA (RoCEv2 RPC server, management plane) and its host client.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

log = logging.getLogger("naa_runtime")

TOP_LEVEL = ("train",)
"""Sub-apps `naaice_cli.main` mounts at top level: `naaice train …` (POET surrogate training)."""
train = train_app

DEFAULT_KERNEL_MODULES = ("naa_runtime.kernels.training", "naa_runtime.training.kernels")
"""Plug-in modules imported when they exist (the training core's kernels)."""


def _env(flag: str) -> str:
    return "NAAICE_" + flag.upper().replace("-", "_")


@app.command()
def serve(  # noqa: PLR0917 - typer reads every option from this signature
    name: Annotated[
        str, typer.Option(envvar=_env("name"), help="NAA name (also seeds its serial).")
    ] = "naa-0",
    address: Annotated[
        str,
        typer.Option(
            envvar=_env("address"), help="IP address of the data plane (UDP 4791) and management."
        ),
    ] = "127.0.0.10",
    port: Annotated[
        int, typer.Option(envvar=_env("port"), help="RoCEv2 UDP port (4791 by the standard).")
    ] = 4791,
    cm_port: Annotated[
        int,
        typer.Option(envvar=_env("cm-port"), help="Port in the RDMA-IP-CM service ID."),
    ] = 12345,
    mgmt_address: Annotated[
        str | None,
        typer.Option(
            envvar=_env("mgmt-address"), help="Management HTTP address (default: --address)."
        ),
    ] = None,
    mgmt_port: Annotated[
        int, typer.Option(envvar=_env("mgmt-port"), help="Management HTTP port.")
    ] = 9010,
    token_file: Annotated[
        Path | None,
        typer.Option(
            envvar=_env("token-file"),
            help="File holding the management bearer token (or set NAAICE_MGMT_TOKEN).",
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            envvar=_env("insecure-no-auth"),
            help="Serve the management API without a token (local experiments only).",
        ),
    ] = False,
    idle_watts: Annotated[
        float, typer.Option(envvar=_env("idle-watts"), help="Board power with nothing running.")
    ] = 27.0,
    active_watts: Annotated[
        float,
        typer.Option(envvar=_env("active-watts"), help="Board power while a kernel runs."),
    ] = 95.0,
    transfer_watts: Annotated[
        float,
        typer.Option(
            envvar=_env("transfer-watts"), help="Extra power while moving data at line rate."
        ),
    ] = 8.0,
    line_rate_gbps: Annotated[
        float,
        typer.Option(envvar=_env("line-rate-gbps"), help="Line rate the transfer power scales to."),
    ] = 100.0,
    flash_watts: Annotated[
        float, typer.Option(envvar=_env("flash-watts"), help="Board power while being flashed.")
    ] = 45.0,
    flash_seconds: Annotated[
        float,
        typer.Option(envvar=_env("flash-seconds"), min=0.0, help="Emulated configuration time."),
    ] = 2.0,
    kernel_timeout: Annotated[
        float,
        typer.Option(
            envvar=_env("kernel-timeout"),
            min=0.001,
            help="Seconds a kernel may run before the RPC is answered KERNEL_TIMEOUT.",
        ),
    ] = 60.0,
    slots: Annotated[
        int,
        typer.Option(envvar=_env("slots"), min=1, help="Concurrent RPC connections (slots)."),
    ] = 4,
    sample_hz: Annotated[
        float,
        typer.Option(envvar=_env("sample-hz"), min=1.0, help="Power-model sample rate."),
    ] = 100.0,
    memory_bytes: Annotated[
        int,
        typer.Option(envvar=_env("memory-bytes"), min=1, help="Board memory reported."),
    ] = 16 * 1024**3,
    board_model: Annotated[
        str, typer.Option(envvar=_env("board-model"), help="Board model reported.")
    ] = "alveo-u55c",
    board_vendor: Annotated[
        str, typer.Option(envvar=_env("board-vendor"), help="Board vendor reported.")
    ] = "AMD",
    kernel_module: Annotated[
        list[str] | None,
        typer.Option(
            envvar=_env("kernel-module"),
            help="Python module that registers kernels at import (repeatable).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(envvar=_env("log-level"))] = "INFO",
) -> None:
    """Run one software NAA (RoCEv2 data plane, kernels, sensors, management API)."""
    import asyncio
    import importlib
    import os
    from importlib.metadata import version

    from naa_runtime.naa import BoardIdentity, NAAConfig
    from naa_runtime.sensors import PowerModel
    from naa_runtime.serve import ServeError, ServeOptions, run

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    token = _read_token(token_file=token_file, env_token=os.environ.get("NAAICE_MGMT_TOKEN"))
    if token is not None and insecure_no_auth:
        raise typer.BadParameter(
            "--insecure-no-auth disables the token, but a token was given (--token-file or "
            "NAAICE_MGMT_TOKEN); pass one or the other",
            param_hint="--insecure-no-auth",
        )
    if token is None and not insecure_no_auth:
        raise typer.BadParameter(
            "no management token: pass --token-file FILE or set NAAICE_MGMT_TOKEN "
            "(or --insecure-no-auth for a local experiment)",
            param_hint="--token-file",
        )
    if token is None:
        log.warning("the management API accepts requests WITHOUT authentication")
    modules = list(kernel_module) if kernel_module else []
    for module in (*DEFAULT_KERNEL_MODULES, *modules):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if module in DEFAULT_KERNEL_MODULES and exc.name == module:
                continue
            raise typer.BadParameter(
                f"cannot import kernel module {module!r}: {exc}", param_hint="--kernel-module"
            ) from exc
    try:
        power = PowerModel(
            idle_watts=idle_watts,
            active_watts=active_watts,
            transfer_watts=transfer_watts,
            line_rate_bits_per_second=line_rate_gbps * 1e9,
            flash_watts=flash_watts,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    config = NAAConfig(
        name=name,
        address=address,
        port=port,
        cm_port=cm_port,
        flash_seconds=flash_seconds,
        board=BoardIdentity(model=board_model, vendor=board_vendor, memory_bytes=memory_bytes),
        power=power,
        sample_hz=sample_hz,
        version=version("naaice"),
    )
    options = ServeOptions(
        mgmt_address=mgmt_address or address,
        mgmt_port=mgmt_port,
        token=token,
        kernel_timeout=kernel_timeout,
        slots=slots,
    )
    try:
        asyncio.run(run(config=config, options=options))
    except ServeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _read_token(*, token_file: Path | None, env_token: str | None) -> str | None:
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {token_file}: {exc.strerror}", param_hint="--token-file"
            ) from exc
        if not token:
            raise typer.BadParameter(f"{token_file} is empty", param_hint="--token-file")
        return token
    if env_token is not None and env_token.strip():
        return env_token.strip()
    return None


EndpointOption = Annotated[
    str,
    typer.Option(
        envvar=_env("endpoint"), help="Management endpoint of the NAA (http://address:port)."
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        envvar=_env("token-file"), help="File holding the bearer token (or NAAICE_MGMT_TOKEN)."
    ),
]


def _client(endpoint: str, token_file: Path | None) -> ManagementClient:
    import os

    from naa_runtime.management.client import ManagementClient

    token = _read_token(token_file=token_file, env_token=os.environ.get("NAAICE_MGMT_TOKEN"))
    return ManagementClient(endpoint=endpoint, token=token)


def _print(doc: object) -> None:
    import json

    typer.echo(json.dumps(doc, indent=2))


@app.command()
def flash(  # noqa: PLR0917 - typer reads every option from this signature
    artifact: Annotated[Path, typer.Argument(help="Software bitstream file (YAML/JSON).")],
    endpoint: EndpointOption = "http://127.0.0.10:9010",
    token_file: TokenFileOption = None,
    bitstream_name: Annotated[
        str | None,
        typer.Option(
            envvar=_env("bitstream-name"),
            help="Bitstream name to report (default: the file's stem).",
        ),
    ] = None,
    digest: Annotated[
        str | None,
        typer.Option(
            envvar=_env("digest"), help="Expected sha256:<hex> (default: computed from the file)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(envvar=_env("force"), help="Flash even while RPC connections are open."),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(envvar=_env("wait"), help="Seconds to wait for Ready (0: do not wait)."),
    ] = 60,
) -> None:
    """Flash a software bitstream file onto a running NAA (digest computed unless given)."""
    from naa_runtime.bitstream import digest_of
    from naa_runtime.management.client import ManagementClientError

    path = artifact.resolve()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from exc
    client = _client(endpoint, token_file)
    body = {
        "name": bitstream_name or path.stem,
        "digest": digest or digest_of(data),
        "artifact": path.as_uri(),
        "force": force,
    }
    try:
        answer = client.request("POST", "/v1/flash", body)
        if wait > 0 and answer.get("state") == "Flashing":
            answer = client.wait_settled(timeout=wait)
    except ManagementClientError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    _print(answer)
    if answer.get("state") == "Error":
        raise typer.Exit(1)


@app.command()
def scrub(
    endpoint: EndpointOption = "http://127.0.0.10:9010", token_file: TokenFileOption = None
) -> None:
    """Clear a running NAA's memory regions and kernel state (drops open connections)."""
    _call(endpoint, token_file, "POST", "/v1/scrub", {})


@app.command()
def health(
    endpoint: EndpointOption = "http://127.0.0.10:9010", token_file: TokenFileOption = None
) -> None:
    """Print a running NAA's state, loaded bitstream and functions."""
    _call(endpoint, token_file, "GET", "/v1/health")


@app.command()
def sensors(
    endpoint: EndpointOption = "http://127.0.0.10:9010", token_file: TokenFileOption = None
) -> None:
    """Print a running NAA's power, energy counter and temperature."""
    _call(endpoint, token_file, "GET", "/v1/sensors")


def _call(
    endpoint: str,
    token_file: Path | None,
    method: str,
    path: str,
    body: dict[str, object] | None = None,
) -> None:
    from naa_runtime.management.client import ManagementClientError

    try:
        _print(_client(endpoint, token_file).request(method, path, body))
    except ManagementClientError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
