"""The `NetworkAttachedAccelerator` model (cluster-scoped): one FPGA board on the network.

Mirrors crds/naaice.io_networkattachedaccelerators.yaml; the node agent writes its status,
the operator reads it to place jobs."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from naaice.api._base import (
    Condition,
    CustomObject,
    Digest,
    DnsLabel,
    DnsSubdomain,
    Model,
    Port,
    Resources,
    Timestamp,
)
from naaice.api._names import KIND_NAA

DATA_PLANE_PORT = 4791
"""The RoCEv2 UDP port (IANA); every NAA listens on it."""
CM_PORT = 12345
"""The RDMA-CM port inside the CM service ID (the NAAICE `SERVER_CONNECTION_PORT`)."""


class SecretKeyRef(Model):
    namespace: DnsLabel
    name: DnsSubdomain
    key: str = Field(default="token", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class Management(Model):
    endpoint: str = Field(min_length=1, max_length=2048)
    token_secret_ref: SecretKeyRef


class Board(Model):
    model: str = Field(min_length=1, max_length=63)
    vendor: str | None = Field(default=None, max_length=63)


class NAASpec(Model):
    address: str = Field(min_length=1, max_length=253)
    port: Port = DATA_PLANE_PORT
    cm_port: Port = CM_PORT
    management: Management
    board: Board
    resources: Resources | None = None
    nodes: list[DnsSubdomain] | None = Field(default=None, max_length=1024)


class LoadedBitstream(Model):
    name: DnsSubdomain
    digest: Digest


class NAAStatus(Model):
    conditions: list[Condition] | None = Field(default=None, max_length=16)
    observed_generation: int | None = Field(default=None, ge=0)
    loaded_bitstream: LoadedBitstream | None = None
    last_heartbeat: Timestamp | None = None
    power_watts: float | None = Field(default=None, ge=0)
    energy_microjoules: int | None = Field(default=None, ge=0)


class NetworkAttachedAccelerator(CustomObject):
    KIND: ClassVar[str] = KIND_NAA

    kind: Literal["NetworkAttachedAccelerator"] = KIND_NAA
    spec: NAASpec
    status: NAAStatus | None = None
