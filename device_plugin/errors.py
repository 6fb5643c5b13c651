"""The node agent's error hierarchy; `device_plugin.kubelet_api` maps these onto gRPC codes
(LookupError → NOT_FOUND, ValueError → INVALID_ARGUMENT, RuntimeError → FAILED_PRECONDITION)
and the CLI onto exit messages. Raised by the profiles, the plugin, inventory and sampling."""

from __future__ import annotations

__all__ = [
    "AgentConfigError",
    "AgentError",
    "AllocationRequestError",
    "CardUnavailableError",
    "ManagementError",
    "UnknownCardError",
]


class AgentError(Exception):
    """Base class of the node agent's errors."""


class AgentConfigError(AgentError, ValueError):
    """A flag, env var or profile setting is invalid; the message names it and the fix."""


class UnknownCardError(AgentError, LookupError):
    """The kubelet named a device ID this plugin does not advertise."""


class AllocationRequestError(AgentError, ValueError):
    """A preferred-allocation request is inconsistent (size, must-include set)."""


class CardUnavailableError(AgentError, RuntimeError):
    """A card is unhealthy or unreachable right now; the kubelet retries after the next
    ListAndWatch update."""


class ManagementError(AgentError, RuntimeError):
    """An NAA management endpoint answered with an error or not at all."""
