"""Starts real `naaice runtime serve` processes for tests and talks to their management API.

Used by the `software_naa` fixture (tests/integration/conftest.py) and by any test or
benchmark that needs a running software NAA. Each NAA gets its own loopback address
(127.0.0.10 upwards), so several can use the standard ports 4791/12345 at once.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIRST_HOST = 10
LAST_HOST = 250
MGMT_PORT = 9010
ROCE_PORT = 4791


class NAAStartError(RuntimeError):
    pass


def naaice_executable() -> str:
    candidate = Path(sys.executable).with_name("naaice")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("naaice")
    if found is None:
        raise NAAStartError(
            "the `naaice` console script is not installed; run `make .venv/.installed`"
        )
    return found


def _address_free(address: str, *, mgmt_port: int) -> bool:
    """Whether nothing listens on address:4791/udp and address:mgmt_port/tcp."""
    for kind, port in ((socket.SOCK_DGRAM, ROCE_PORT), (socket.SOCK_STREAM, mgmt_port)):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


# Each process walks the range from a random start: concurrent test runs on one machine (all
# using this factory) would otherwise probe and take the same addresses in lockstep.
_span = LAST_HOST - FIRST_HOST + 1
_hosts = (FIRST_HOST + (offset % _span) for offset in itertools.count(random.randrange(_span)))


def next_free_address(*, mgmt_port: int = MGMT_PORT) -> str:
    """A loopback address for another software NAA (127.0.0.10–250, as contracts.md says)."""
    for _ in range(_span):
        address = f"127.0.0.{next(_hosts)}"
        if _address_free(address, mgmt_port=mgmt_port):
            return address
    raise NAAStartError("no free loopback address in 127.0.0.10–250 for another software NAA")


_host_side = itertools.count(random.randrange(1, 60_000))


def host_side_address() -> str:
    """A loopback address for the host side of an RPC connection (its own RoCEv2 endpoint on
    UDP 4791), outside the NAAs' range and spread randomly over 127.1.0.0/16 so concurrent test
    runs on one machine rarely meet."""
    for _ in range(1000):
        n = next(_host_side) % 65_024 + 256
        address = f"127.1.{n >> 8}.{n & 0xFF}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, ROCE_PORT))
            except OSError:
                continue
        return address
    raise NAAStartError("no free loopback address in 127.1.0.0/16 for a host endpoint")


@dataclass
class RunningNAA:
    """A `naaice runtime serve` process and a small synchronous client for its API."""

    name: str
    address: str
    mgmt_port: int
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.mgmt_port}"

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | bool | None = True,
    ) -> tuple[int, Any]:
        """(status, decoded JSON or text). token=True uses the NAA's token, a string another
        token, None none at all."""
        headers = {"Content-Type": "application/json"}
        if token is True:
            headers["Authorization"] = f"Bearer {self.token}"
        elif isinstance(token, str):
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw, ctype = (
                    response.status,
                    response.read(),
                    response.headers.get_content_type(),
                )
        except urllib.error.HTTPError as exc:
            status, raw, ctype = exc.code, exc.read(), exc.headers.get_content_type()
        if ctype == "application/json":
            return status, json.loads(raw)
        return status, raw.decode()

    def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> tuple[int, Any]:
        return self.request("POST", path, body, **kwargs)

    def health(self) -> dict[str, Any]:
        status, body = self.get("/v1/health")
        assert status == 200, body
        return dict(body)

    def wait_for_state(self, state: str, *, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if health["state"] == state:
                return health
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not reach {state} in {timeout}s: {health}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, *, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class SoftwareNAAFactory:
    """Starts software NAAs on distinct loopback addresses; `close` stops them all."""

    def __init__(self, *, workdir: Path) -> None:
        self._workdir = workdir
        self._running: list[RunningNAA] = []
        self._serial = itertools.count()

    def __call__(
        self,
        *,
        name: str | None = None,
        flash_seconds: float = 0.2,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        wait: bool = True,
        secure: bool = True,
        token_via_env: bool = False,
        startup_timeout: float = 30.0,
    ) -> RunningNAA:
        index = next(self._serial)
        name = name or f"naa-{index}"
        for attempt in range(5):
            naa = self._start(
                name=name,
                address=next_free_address(),
                flash_seconds=flash_seconds,
                extra_args=extra_args,
                env=env,
                secure=secure,
                token_via_env=token_via_env,
            )
            if not wait:
                return naa
            try:
                self._wait_healthy(naa, timeout=startup_timeout)
            except NAAStartError:
                # Another process on this machine took the address between our probe and the
                # runtime's bind: try the next one.
                log = naa.log()
                if attempt < 4 and ("cannot bind" in log or "cannot listen" in log):
                    continue
                raise
            return naa
        raise AssertionError("unreachable")

    def _start(
        self,
        *,
        name: str,
        address: str,
        flash_seconds: float,
        extra_args: tuple[str, ...],
        env: dict[str, str] | None,
        secure: bool,
        token_via_env: bool,
    ) -> RunningNAA:
        token = secrets.token_urlsafe(24)
        token_file = self._workdir / f"{name}.token"
        token_file.write_text(token + "\n")
        log_path = self._workdir / f"{name}.log"
        args = [
            naaice_executable(),
            "runtime",
            "serve",
            "--name",
            name,
            "--address",
            address,
            "--mgmt-port",
            str(MGMT_PORT),
            *self._auth_args(secure=secure, token_via_env=token_via_env, token_file=token_file),
            "--flash-seconds",
            str(flash_seconds),
            *extra_args,
        ]
        process_env = {k: v for k, v in os.environ.items() if not k.startswith("NAAICE_")}
        process_env.update(env or {})
        if secure and token_via_env:
            process_env["NAAICE_MGMT_TOKEN"] = token
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                args, stdout=log_file, stderr=subprocess.STDOUT, env=process_env
            )
        naa = RunningNAA(
            name=name,
            address=address,
            mgmt_port=MGMT_PORT,
            token=token,
            process=process,
            log_path=log_path,
            args=args,
        )
        self._running.append(naa)
        return naa

    @staticmethod
    def _auth_args(*, secure: bool, token_via_env: bool, token_file: Path) -> tuple[str, ...]:
        if not secure:
            return ("--insecure-no-auth",)
        if token_via_env:
            return ()
        return ("--token-file", str(token_file))

    @staticmethod
    def _wait_healthy(naa: RunningNAA, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if naa.process.poll() is not None:
                raise NAAStartError(
                    f"{naa.name} exited with {naa.process.returncode} before answering "
                    f"/v1/health:\n{naa.log()[-4000:]}"
                )
            try:
                status, _ = naa.get("/v1/health")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
                continue
            if status == 200:
                return
            time.sleep(0.05)
        naa.stop()
        raise NAAStartError(
            f"{naa.name} did not answer /v1/health in {timeout}s:\n{naa.log()[-4000:]}"
        )

    def close(self) -> None:
        for naa in self._running:
            naa.stop()
        self._running.clear()
