"""The embedded cluster's stand-in for kubelet + a container runtime: runs the containers of pods
bound to the KWOK fake nodes as local processes and reports their status (see runner.py and
docs/cluster.md). Started by `naaice_cluster.controlplane` as
`python -m naaice_cluster.podrunner`."""

from naaice_cluster.podrunner.runner import Runner, RunnerConfig, namespaces_available

__all__ = ["Runner", "RunnerConfig", "namespaces_available"]
