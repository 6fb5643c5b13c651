"""Kernels an NAA can run, the registry that binds them to fn codes, and their interfaces."""

from naa_runtime.kernels.base import ActivityObserver, Kernel, KernelLookup, KernelTimeout
from naa_runtime.kernels.registry import (
    TEST_FUNCTIONS,
    DuplicateKernelError,
    KernelBinding,
    KernelContext,
    KernelFactory,
    KernelRegistry,
    RegistryError,
    UnknownKernelError,
    default_registry,
    process_registry,
    register,
    register_shared,
)

__all__ = [
    "TEST_FUNCTIONS",
    "ActivityObserver",
    "DuplicateKernelError",
    "Kernel",
    "KernelBinding",
    "KernelContext",
    "KernelFactory",
    "KernelLookup",
    "KernelRegistry",
    "KernelTimeout",
    "RegistryError",
    "UnknownKernelError",
    "default_registry",
    "process_registry",
    "register",
    "register_shared",
]
