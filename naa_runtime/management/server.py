"""The management plane's HTTP server (docs/reference/management-api.md).

`naa_runtime.cli serve` calls `create_app` and runs it with aiohttp next to the data plane.
Handlers only translate HTTP to `SoftwareNAA` calls and back; every refusal is a JSON
`{"error", "message"}` with the status its cause deserves.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from naa_runtime.management.metrics import render
from naa_runtime.naa import NAAError, NAAState, SoftwareNAA

log = logging.getLogger(__name__)

NAA_KEY = web.AppKey("naa", SoftwareNAA)
TOKEN_KEY = web.AppKey("token", str)
METRICS_KEY = web.AppKey("metrics", CollectorRegistry)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


class _FlashRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=253)
    digest: str
    artifact: str = Field(min_length=1)
    force: bool = False


class _ScrubRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _BadRequest(Exception):
    pass


async def _body(request: web.Request, model: type[BaseModel], *, optional: bool) -> Any:
    raw = await request.read()
    if not raw.strip() and optional:
        return model()
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _BadRequest(f"the request body is not JSON ({exc}); send a JSON object") from exc
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise _BadRequest(f"invalid request body: {problems}") from exc


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NAAError as exc:
        return error_response(exc.status, exc.code, str(exc))
    except _BadRequest as exc:
        return error_response(400, "invalid-request", str(exc))
    except web.HTTPNotFound:
        return error_response(
            404,
            "not-found",
            f"no endpoint {request.path}; see docs/reference/management-api.md for the API",
        )
    except web.HTTPMethodNotAllowed as exc:
        return error_response(
            405,
            "method-not-allowed",
            f"{request.method} is not allowed on {request.path}; use "
            f"{', '.join(sorted(exc.allowed_methods))}",
        )
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            413,
            "request-too-large",
            "the request body is larger than 64 KiB; a flash request is a small JSON object",
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "-")
        return error_response(exc.status, code, f"{exc.reason}: {request.method} {request.path}")
    except Exception:
        log.exception("management request %s %s failed", request.method, request.path)
        return error_response(
            500, "internal-error", "the NAA runtime failed; see its log for the traceback"
        )


def _auth_middleware(token: str | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = f"Bearer {token}".encode() if token is not None else None

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None:
            return await handler(request)
        given = request.headers.get("Authorization", "")
        if not given:
            return error_response(
                401,
                "unauthorized",
                "missing 'Authorization: Bearer <token>' header; send the NAA's management "
                "token (the Secret named in the NAA's spec.management.tokenSecretRef)",
            )
        if not hmac.compare_digest(given.encode(), expected):
            return error_response(
                401,
                "unauthorized",
                "wrong bearer token; send the token the runtime was started with "
                "(--token-file or NAAICE_MGMT_TOKEN)",
            )
        return await handler(request)

    return auth


async def _identity(request: web.Request) -> web.Response:
    naa = request.app[NAA_KEY]
    cfg = naa.config
    board = cfg.board
    return web.json_response(
        {
            "name": cfg.name,
            "serial": cfg.serial,
            "board": {"model": board.model, "vendor": board.vendor},
            "resources": {
                "lut": board.lut,
                "ff": board.ff,
                "dsp": board.dsp,
                "bram": board.bram,
                "uram": board.uram,
                "memoryBytes": board.memory_bytes,
            },
            "dataPlane": {"address": cfg.address, "port": cfg.port, "cmPort": cfg.cm_port},
            "version": cfg.version,
        }
    )


async def _health(request: web.Request) -> web.Response:
    naa = request.app[NAA_KEY]
    loaded = naa.loaded
    return web.json_response(
        {
            "state": naa.state.value,
            "healthy": naa.state in (NAAState.IDLE, NAAState.READY),
            "reason": naa.reason,
            "loadedBitstream": {"name": loaded.name, "digest": loaded.digest} if loaded else None,
            "activeConnections": naa.active_connections,
            "functions": naa.functions,
        }
    )


async def _flash(request: web.Request) -> web.Response:
    naa = request.app[NAA_KEY]
    body: _FlashRequest = await _body(request, _FlashRequest, optional=False)
    state = await naa.flash(
        name=body.name, digest=body.digest, artifact=body.artifact, force=body.force
    )
    if state is NAAState.READY:
        return web.json_response({"state": state.value, "alreadyLoaded": True}, status=200)
    return web.json_response({"state": state.value}, status=202)


async def _scrub(request: web.Request) -> web.Response:
    naa = request.app[NAA_KEY]
    await _body(request, _ScrubRequest, optional=True)  # none or {}: refuse anything else
    state = await naa.scrub()
    return web.json_response({"state": state.value, "scrubbed": True})


async def _sensors(request: web.Request) -> web.Response:
    sample = request.app[NAA_KEY].sensor_sample()
    return web.json_response(
        {
            "timestampNs": sample.timestamp_ns,
            "powerWatts": round(sample.power_watts, 3),
            "energyMicrojoules": sample.energy_microjoules,
            "temperatureC": round(sample.temperature_celsius, 2),
            "activity": {"busy": round(sample.busy, 4)},
        }
    )


async def _metrics(request: web.Request) -> web.Response:
    body = render(request.app[METRICS_KEY])
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def create_app(
    *, naa: SoftwareNAA, token: str | None, metrics: CollectorRegistry
) -> web.Application:
    """The management application; `token=None` disables authentication (only with
    `--insecure-no-auth`)."""
    app = web.Application(middlewares=[_errors, _auth_middleware(token)], client_max_size=64 * 1024)
    app[NAA_KEY] = naa
    app[METRICS_KEY] = metrics
    app.router.add_get("/v1/identity", _identity)
    app.router.add_get("/v1/health", _health)
    app.router.add_post("/v1/flash", _flash)
    app.router.add_post("/v1/scrub", _scrub)
    app.router.add_get("/v1/sensors", _sensors)
    app.router.add_get("/metrics", _metrics)
    return app
