"""RoCEv2 data-plane benchmark: the software NAA's transport against raw UDP, in one run.

Prints:
  * RDMA WRITE goodput of a 64 MiB input region (invoke of the no-op kernel 3 until its reply)
    vs a raw-UDP blast of the same bytes in datagrams of the same size (4112 B = BTH + 4 KiB
    + ICRC), sent with the same GSO batching and received with GRO — the ceiling;
  * invoke round trip p50/p99 for a 1-byte region with kernel 3 vs a 1-byte UDP ping-pong,
    measured in alternating blocks (10 of 200 each by default) so both see the same load,
    after waiting (up to --settle seconds) for the CPU pressure to fall below the receivers'
    busy-poll threshold, so that a run right after other work measures the data path and not
    the contended mode (the pressure found and the wait are printed);
  * RDMA WRITE goodput with 1 % loss injected on the sending side of both ends.
Floors: goodput >= 5 Gbit/s and >= 0.5x the raw-UDP ceiling; p50 round trip <= 2x ping-pong.

The NAA and the UDP sink/echo run in a separate process (as a real NAA would), on loopback
addresses 127.93.x.y. Writes a CDF of the round trips to out/bench/roce-rtt.png.

  .venv/bin/python bench/roce.py [--runs 3] [--rtt-count 2000] [--rtt-blocks 10] [--size-mib 64]
                                [--settle 30]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SINK_PORT = 4792
ECHO_PORT = 4793
SEG = 4112  # one RoCE packet: BTH 12 + payload 4096 + ICRC 4
SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104
OUT = ROOT / "out" / "bench"


# --------------------------------------------------------------------------- helper process


def serve(address: str, loss: float) -> None:
    """The NAA side: an RpcServer on <address>:4791, a GRO sink and a UDP echo."""
    from naa_runtime.kernels import TEST_FUNCTIONS, default_registry
    from naa_runtime.roce.endpoint import Impairment
    from naa_runtime.rpc import RpcServer

    binding = default_registry().bind(TEST_FUNCTIONS)
    srv = RpcServer(
        address=address,
        kernels=binding.lookup,
        impairment=Impairment(loss=loss, seed=7) if loss else None,
    )
    srv.open()

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
    sink.setsockopt(SOL_UDP, UDP_GRO, 1)
    sink.bind((address, SINK_PORT))

    def run_sink() -> None:
        buf = bytearray(70000)
        total = 0
        while True:
            n, _anc, _f, peer = sink.recvmsg_into([buf], 64)
            if n == 1:  # end marker: report what arrived, start over
                sink.sendto(struct.pack("!Q", total), peer)
                total = 0
            else:
                total += n

    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind((address, ECHO_PORT))

    def run_echo() -> None:
        buf = bytearray(2048)
        while True:
            n, peer = echo.recvfrom_into(buf)
            if buf[:n] == b"cpu?":  # this process's CPU seconds (user + system) so far
                # process_time, not os.times: clock ticks (10 ms) are as long as a transfer
                echo.sendto(struct.pack("!d", time.process_time()), peer)
            else:
                echo.sendto(buf[:n], peer)

    threading.Thread(target=run_sink, daemon=True).start()
    threading.Thread(target=run_echo, daemon=True).start()
    print("READY", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    srv.close()


class Helper:
    def __init__(self, address: str, loss: float = 0.0) -> None:
        self.address = address
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", address, "--loss", str(loss)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"helper on {address} failed to start: {line!r}")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# --------------------------------------------------------------------------- measurements


def udp_blast(address: str, local: str, size: int) -> float:
    """Gbit/s of `size` bytes in SEG-sized datagrams, GSO batches of 15, as received."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, 32, 64 << 20)  # SO_SNDBUFFORCE
    s.bind((local, 0))
    payload = memoryview(np.ones(size, np.uint8)).cast("B")
    batch = 15 * SEG
    anc = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", SEG))]
    s.settimeout(10)
    t0 = time.perf_counter()
    for off in range(0, size, batch):
        s.sendmsg([payload[off : off + batch]], anc, 0, (address, SINK_PORT))
    s.sendto(b"x", (address, SINK_PORT))
    got = struct.unpack("!Q", s.recv(8))[0]
    dt = time.perf_counter() - t0
    s.close()
    return got * 8 / dt / 1e9


def udp_ping_pong(address: str, local: str, count: int) -> np.ndarray:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((local, 0))
    s.settimeout(5)
    out = np.empty(count)
    for i in range(count):
        t = time.perf_counter()
        s.sendto(b"p", (address, ECHO_PORT))
        s.recv(16)
        out[i] = time.perf_counter() - t
    s.close()
    return out * 1e6


def naa_cpu_seconds(address: str) -> float:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"cpu?", (address, ECHO_PORT))
        return float(struct.unpack("!d", s.recv(8))[0])


def rdma_write_goodput(
    address: str, local: str, size: int, runs: int, loss: float = 0.0
) -> tuple[list[float], dict[str, object]]:
    """Goodput per run; the stats include the CPU seconds per transfer on both sides."""
    from naa_runtime.mrsp import MrFlags
    from naa_runtime.roce.endpoint import Impairment
    from naa_runtime.rpc import HostConnection, Region
    from naa_runtime.rpc import host as host_module

    big = np.ones(size, np.uint8)
    small = np.zeros(1, np.uint8)
    h = HostConnection(
        naa_address=address,
        local_address=local,
        impairment=Impairment(loss=loss, seed=11) if loss else None,
    )
    h.connect()
    h.register(
        [
            Region(view=memoryview(big), flags=MrFlags.INPUT),
            Region(view=memoryview(small), flags=MrFlags.OUTPUT, requested_addr=size),
        ]
    )
    h.mrsp()
    rates = []
    host_cpu: list[float] = []
    naa_cpu: list[float] = []
    for _ in range(runs):
        n0, h0 = naa_cpu_seconds(address), time.process_time()
        t = time.perf_counter()
        if h.call(3, timeout=600) != 0:
            raise RuntimeError("the no-op kernel failed")
        rates.append(size * 8 / (time.perf_counter() - t) / 1e9)
        host_cpu.append(time.process_time() - h0)
        naa_cpu.append(naa_cpu_seconds(address) - n0)
    stats = host_module._devices[local].endpoint.stats.snapshot()
    stats["host_cpu"] = statistics.median(host_cpu)
    stats["naa_cpu"] = statistics.median(naa_cpu)
    h.disconnect()
    return rates, stats


def round_trips_alternating(
    address: str, local: str, udp_local: str, count: int, blocks: int = 10
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Invoke round trips and UDP ping-pongs in µs, measured in `blocks` alternating blocks
    (count // blocks each) so that both see the same machine conditions, and the CPU seconds
    per invoke (host process, NAA process; the ping-pong blocks excluded)."""
    from naa_runtime.mrsp import MrFlags
    from naa_runtime.rpc import HostConnection, Region

    a = np.zeros(1, np.uint8)
    h = HostConnection(naa_address=address, local_address=local)
    h.connect()
    h.register([Region(view=memoryview(a), flags=MrFlags.INPUT | MrFlags.OUTPUT)])
    h.mrsp()
    for _ in range(50):
        h.call(3, timeout=10)
    per_block = max(1, count // blocks)
    rtt: list[np.ndarray] = []
    pp: list[np.ndarray] = []
    host_cpu = naa_cpu = 0.0
    for _ in range(blocks):
        pp.append(udp_ping_pong(address, udp_local, per_block))
        out = np.empty(per_block)
        n0, h0 = naa_cpu_seconds(address), time.process_time()
        for i in range(per_block):
            t = time.perf_counter()
            h.call(3, timeout=10)
            out[i] = time.perf_counter() - t
        host_cpu += time.process_time() - h0
        naa_cpu += naa_cpu_seconds(address) - n0
        rtt.append(out * 1e6)
    h.disconnect()
    calls = per_block * blocks
    return np.concatenate(rtt), np.concatenate(pp), (host_cpu / calls, naa_cpu / calls)


def settle(limit: float) -> tuple[float | None, float]:
    """Wait, up to `limit` seconds, until the receivers would busy-poll (the CPU pressure
    below their threshold, `endpoint.cpu_to_spare`): right after other work (a test run) the
    pressure takes ~10-20 s to fall, and the round trips would measure the contended mode
    (spin off, a wake-up per datagram) instead of the data path. The pressure found and the
    seconds waited, both printed with the results."""
    from naa_runtime.roce.endpoint import cpu_pressure, cpu_to_spare

    found = cpu_pressure()
    t0 = time.monotonic()
    while not cpu_to_spare() and time.monotonic() - t0 < limit:
        time.sleep(0.5)
    return found, time.monotonic() - t0


def plot(rdma: np.ndarray, udp: np.ndarray) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for data, label in ((udp, "UDP ping-pong (1 B)"), (rdma, "naa invoke, kernel 3 (1 B)")):
        xs = np.sort(data)
        ax.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=label)
    ax.set_xscale("log")
    ax.set_xlabel("round trip (µs)")
    ax.set_ylabel("fraction of calls")
    ax.set_title("RoCEv2 software NAA: invoke round trip vs UDP ping-pong (loopback)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path = OUT / "roce-rtt.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--loss", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3, help="64 MiB transfers per measurement")
    parser.add_argument("--rtt-count", type=int, default=2000, help="round trips measured")
    parser.add_argument(
        "--rtt-blocks",
        type=int,
        default=10,
        help="alternating blocks of invokes and ping-pongs the round trips are measured in",
    )
    parser.add_argument("--size-mib", type=int, default=64, help="bulk transfer size")
    parser.add_argument("--loss-size-mib", type=int, default=16, help="transfer size at 1 %% loss")
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="seconds to wait at most, before the round trips, for the CPU pressure to fall "
        "below the busy-poll threshold (0: measure at once)",
    )
    args = parser.parse_args()
    if args.rtt_blocks < 1:
        parser.error(f"--rtt-blocks must be at least 1, got {args.rtt_blocks}")
    if args.settle < 0:
        parser.error(f"--settle must be 0 (measure at once) or more seconds, got {args.settle}")
    if args.serve:
        serve(args.serve, args.loss)
        return

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    load_start = os.getloadavg()[0]
    base = f"127.93.{os.getpid() % 200}"
    naa, lossy_naa = f"{base}.2", f"{base}.3"
    host, lossy_host, udp_host = f"{base}.10", f"{base}.11", f"{base}.12"
    size = args.size_mib << 20
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("starting the NAA processes", total=6)
        clean = Helper(naa)
        lossy = Helper(lossy_naa, loss=0.01)
        try:
            progress.update(task, advance=1, description="raw UDP blast (ceiling)")
            blast = [udp_blast(naa, udp_host, size) for _ in range(args.runs)]
            progress.update(task, advance=1, description="RDMA WRITE goodput")
            write, write_stats = rdma_write_goodput(naa, host, size, args.runs)
            progress.update(task, advance=1, description="raw UDP blast again")
            blast += [udp_blast(naa, udp_host, size) for _ in range(args.runs)]
            progress.update(task, description="waiting for the CPU pressure to settle")
            pressure, waited = settle(args.settle)
            progress.update(
                task, advance=1, description="invoke round trips and UDP ping-pong, alternating"
            )
            rtt, pp, rtt_cpu = round_trips_alternating(
                naa, host, udp_host, args.rtt_count, args.rtt_blocks
            )
            progress.update(task, advance=1, description="RDMA WRITE goodput at 1 % loss")
            lossy_rates, lossy_stats = rdma_write_goodput(
                lossy_naa, lossy_host, args.loss_size_mib << 20, max(1, args.runs - 1), loss=0.01
            )
            progress.update(task, advance=1)
        finally:
            clean.close()
            lossy.close()
    ceiling = statistics.median(blast)
    goodput = statistics.median(write)
    p50, p99 = np.percentile(rtt, [50, 99])
    u50, u99 = np.percentile(pp, [50, 99])
    table = Table(title="RoCEv2 software NAA on loopback (medians; this run)")
    table.add_column("measurement")
    table.add_column("naaice", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("floor", justify="right")
    ok_g = goodput >= 5.0 and goodput >= 0.5 * ceiling
    table.add_row(
        f"RDMA WRITE {args.size_mib} MiB goodput (Gbit/s)",
        f"{goodput:.2f}",
        f"{ceiling:.2f} raw UDP",
        f"{goodput / ceiling:.2f}x",
        ("PASS" if ok_g else "MISS") + " (>=5, >=0.5x)",
    )
    ok_l = p50 <= 2 * u50
    table.add_row(
        "invoke round trip p50 (µs)",
        f"{p50:.0f}",
        f"{u50:.0f} ping-pong",
        f"{p50 / u50:.2f}x",
        ("PASS" if ok_l else "MISS") + " (<=2x)",
    )
    table.add_row("invoke round trip p99 (µs)", f"{p99:.0f}", f"{u99:.0f}", f"{p99 / u99:.2f}x", "")
    lossy_g = statistics.median(lossy_rates)
    table.add_row(
        f"RDMA WRITE {args.loss_size_mib} MiB at 1 % loss (Gbit/s)",
        f"{lossy_g:.2f}",
        f"{goodput:.2f} lossless",
        f"{lossy_g / goodput:.2f}x",
        "",
    )
    console.print(table)
    console.print(
        f"runs: UDP blast {', '.join(f'{x:.2f}' for x in blast)} | RDMA WRITE "
        f"{', '.join(f'{x:.2f}' for x in write)} | at 1 % loss "
        f"{', '.join(f'{x:.2f}' for x in lossy_rates)} Gbit/s"
    )
    hc, nc = float(write_stats["host_cpu"]), float(write_stats["naa_cpu"])  # type: ignore[arg-type]
    console.print(
        f"CPU per {args.size_mib} MiB transfer: host {hc * 1e3:.0f} ms, NAA {nc * 1e3:.0f} ms "
        f"-> CPU-bound goodput {size * 8 / max(hc, nc) / 1e9:.2f} Gbit/s (what an otherwise idle "
        "machine with a core per side would reach; the table shows wall-clock figures)"
    )
    console.print(
        f"transport (host side): lossless runs retransmitted {write_stats['retransmits']} "
        f"packets; 1 % loss run retransmitted {lossy_stats['retransmits']}, "
        f"NAKs received {lossy_stats['naks_received']}"
    )
    console.print(
        f"CPU per 1-byte invoke: host {rtt_cpu[0] * 1e6:.0f} µs, NAA {rtt_cpu[1] * 1e6:.0f} µs"
    )
    console.print(
        f"load average: {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
        f"on {os.cpu_count()} CPUs"
    )
    from naa_runtime.roce.endpoint import SPIN_CPU_PRESSURE, cpu_pressure

    now_p = cpu_pressure()
    console.print(
        "CPU pressure (PSI some avg10) before the round trips: "
        + ("unreadable (load average decides)" if pressure is None else f"{pressure:.1f} %")
        + (
            f", waited {waited:.0f} s for it to fall below {SPIN_CPU_PRESSURE:.0f} % "
            "(the receivers' busy-poll threshold)"
            if waited >= 0.5
            else ""
        )
        + ("" if now_p is None else f"; {now_p:.1f} % at the end")
    )
    for name, ok, figure in (
        ("RDMA WRITE goodput >= 5 Gbit/s", goodput >= 5.0, f"{goodput:.2f} Gbit/s"),
        (
            "RDMA WRITE goodput >= 0.5x raw-UDP ceiling",
            goodput >= 0.5 * ceiling,
            f"{goodput / ceiling:.2f}x of {ceiling:.2f} Gbit/s",
        ),
        (
            "invoke p50 round trip <= 2x UDP ping-pong",
            ok_l,
            f"{p50 / u50:.2f}x ({p50:.0f} vs {u50:.0f} µs)",
        ),
    ):
        console.print(f"FLOOR {'PASS' if ok else 'MISS'}: {name}: {figure}")
    console.print(f"round-trip CDF: {plot(rtt, pp)}")
    if not (ok_g and ok_l):
        sys.exit(1)  # a missed floor, as the other benches report it


if __name__ == "__main__":
    main()
