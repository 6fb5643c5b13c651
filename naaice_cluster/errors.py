"""Errors of the embedded control plane, raised by `naaice_cluster.build`, `.controlplane` and
`.podrunner`; the CLI maps every one of them to a one-line message and exit code 1.

Each message says what was wrong and what to do about it."""

from __future__ import annotations


class ClusterError(Exception):
    """Base of every error this package raises on purpose."""


class BuildError(ClusterError):
    """The Go toolchain is missing or a `go build` of a pinned binary failed."""


class StartError(ClusterError):
    """A control-plane process exited or did not become ready in time."""


class StateError(ClusterError):
    """No recorded cluster where one was expected (or one already exists)."""
