"""Kernels an NAA can run, the registry that binds them to fn codes, and their interfaces."""

from naa_runtime.kernels.base import ActivityObserver, Kernel, KernelLookup, KernelTimeout

__all__ = ["ActivityObserver", "Kernel", "KernelLookup", "KernelTimeout"]
