"""Command line of the pod runner process (`python -m naaice_cluster.podrunner`), started by
`naaice_cluster.controlplane`; stops cleanly, killing its pods' processes, on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from naaice_cluster.kube import Credentials, Kube
from naaice_cluster.podrunner.runner import Runner, RunnerConfig, namespaces_available


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="naaice-pod-runner", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--pods-dir", type=Path, required=True)
    parser.add_argument("--apiserver-port", type=int, required=True)
    parser.add_argument("--node", action="append", required=True, dest="nodes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    use_ns = namespaces_available()
    logging.info(
        "pod runner for nodes %s; private mount namespaces: %s", ", ".join(args.nodes), use_ns
    )
    runner = Runner(
        kube=Kube(Credentials.from_kubeconfig(args.kubeconfig)),
        config=RunnerConfig(
            nodes=tuple(args.nodes),
            pods_dir=args.pods_dir,
            apiserver_port=args.apiserver_port,
            use_namespaces=use_ns,
        ),
    )

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.info("signal %d: stopping pods", signum)
        runner.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner.run()
    logging.info("pod runner stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
