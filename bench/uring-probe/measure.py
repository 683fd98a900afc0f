#!/usr/bin/env python3
"""uring-probe vs shoal vs HAProxy, side by side in one run (issue 14, item 2).

Reuses bench/bench.py's backends (nginx serving a 600-byte file), its HAProxy
and shoal configurations and its wrk / perf helpers; bench.py itself is not
changed. Each round measures every system in turn (short connections with
`Connection: close`, then keep-alive; --connections wrk connections,
--duration seconds each); each figure is the median of --rounds rounds. Then
one more pass per system counts system calls (perf stat on the syscall
tracepoints) and io_uring submissions (the io_uring:io_uring_submit_req
tracepoint) per request.

    cargo build --release -p shoal                       # at the repository root
    cargo build --release --manifest-path bench/uring-probe/Cargo.toml
    python3 bench/uring-probe/measure.py [--rounds 3 --duration 10 --connections 32]

Loopback only; every load is bounded in time; only processes this script
started are stopped, by PID (bench.stop_all).
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import bench  # noqa: E402  (bench/bench.py)

PROBE_PORT = 23080


def start_probe(name, port, binary, backend_port, threads, extra=()):
    p = bench.start([str(binary), "--listen", f"127.0.0.1:{port}", "--backend",
                     f"127.0.0.1:{backend_port}", "--threads", str(threads), *extra])
    bench.wait_port(port)
    return bench.System(name, [port], [], [p])


def profile(ports, duration, conns, close, pids):
    """bench.syscall_profile, plus io_uring SQEs submitted per request."""
    per = bench.syscall_profile(ports, duration, conns, close, pids)
    if per is None:
        return None
    # A second, short run for the io_uring tracepoint alone (bench's event
    # list is fixed); per request, so the run length does not matter.
    out = Path(tempfile.mkstemp(prefix="uring-probe-perf-", suffix=".csv")[1])
    secs = min(duration, 5)
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(out), "-e", "io_uring:io_uring_submit_req",
                             "-p", ",".join(map(str, pids)), "--", "sleep", str(secs + 1)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    header = '-H "Connection: close"' if close else ""
    w = subprocess.run(f"wrk -t1 -c{conns} -d{secs}s {header} http://127.0.0.1:{ports[0]}/index.html",
                       shell=True, text=True, capture_output=True, timeout=secs + 60).stdout
    total = int(re.search(r"(\d+) requests in", w).group(1))
    perf.wait(timeout=secs + 30)
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) >= 3 and parts[0].strip().isdigit():
            per["io_uring SQEs"] = int(parts[0]) / total
    return per


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per workload (at most 10)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--systems", default="haproxy,shoal,uring-probe",
                    help="comma-separated, of haproxy, shoal, uring-probe, uring-probe-sqe,"
                         " uring-probe-multishot")
    ap.add_argument("--no-syscalls", action="store_true")
    ap.add_argument("--json", default=str(HERE / "results.json"), help="raw samples and medians")
    args = ap.parse_args()
    duration = min(args.duration, 10)
    root = bench.ROOT
    shoal_bin = root / "target" / "release" / "shoal"
    probe_bin = HERE / "target" / "release" / "uring-probe"
    for name, b in (("shoal", shoal_bin), ("uring-probe", probe_bin)):
        if name in args.systems.split(",") and not b.exists():
            sys.exit(f"missing {b}: build it first (see the docstring)")
    for tool in ("haproxy", "nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"missing {tool}: apt-get install -y haproxy nginx-light wrk")
    fds = bench.raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="uring-probe-"))
    work.chmod(0o755)
    wanted = args.systems.split(",")
    samples, syscalls = {}, {}
    try:
        # bench.start_backends also starts iperf3; give it a stand-in if absent.
        if shutil.which("iperf3") is None:
            sys.exit("missing iperf3 (bench.start_backends starts one): apt-get install -y iperf3")
        bench.start_backends(work)
        starters = {
            "haproxy": lambda: bench.start_haproxy(work, (fds - 256) // 2),
            "shoal": lambda: bench.start_shoal(work, shoal_bin),
            # One backend: both of bench's nginx ports are the same nginx worker.
            "uring-probe": lambda: start_probe("uring-probe", PROBE_PORT, probe_bin, 18081, bench.CORES),
            # A/B: the FIN passed on with IORING_OP_SHUTDOWN (an io-wq hop) instead of shutdown(2).
            "uring-probe-sqe": lambda: start_probe("uring-probe-sqe", PROBE_PORT + 10, probe_bin, 18081, bench.CORES,
                                                   ["--shutdown", "sqe"]),
            # One multishot Recv per direction for the connection's life.
            "uring-probe-multishot": lambda: start_probe("uring-probe-multishot", PROBE_PORT + 20, probe_bin, 18081,
                                                         bench.CORES, ["--recv", "multishot"]),
        }
        systems = [starters[n]() for n in wanted]
        for r in range(args.rounds):
            for s in systems:
                for close, kind in ((True, "short"), (False, "keep-alive")):
                    bench.log(f"round {r + 1}/{args.rounds}: {s.name} {kind}")
                    rps, p50, p99, errs, cpu = bench.wrk(s.web_ports, duration, args.connections, close, s.pids)
                    if errs:
                        bench.log(f"{s.name} {kind}: {errs}")
                    for k, v in (("rps", rps), ("p50", p50), ("p99", p99), ("cpu", cpu)):
                        samples.setdefault(f"{kind} {k}", {}).setdefault(s.name, []).append(v)
                    samples.setdefault(f"{kind} errors", {}).setdefault(s.name, []).append(errs)
        if not args.no_syscalls:
            for s in systems:
                for close, kind in ((True, "short"), (False, "keep-alive")):
                    bench.log(f"counting {s.name}'s system calls per {kind} request")
                    syscalls.setdefault(kind, {})[s.name] = profile(s.web_ports, duration, args.connections,
                                                                    close, s.pids)
        for s in systems:
            s.stop()
    finally:
        bench.stop_all()

    med = {}
    for row, per in samples.items():
        if row.endswith("errors"):
            continue
        for name, vals in per.items():
            known = sorted(v for v in vals if v is not None)
            med.setdefault(row, {})[name] = known[len(known) // 2] if known else None
    Path(args.json).write_text(json.dumps({"samples": samples, "median": med, "syscalls": syscalls}, indent=1))

    names = [n for n in ("haproxy", "shoal", "uring-probe", "uring-probe-sqe", "uring-probe-multishot") if n in wanted]
    labels = {"rps": "requests/s", "p50": "p50 (ms)", "p99": "p99 (ms)", "cpu": "CPU-s per 10⁵ requests"}
    print(f"\n{args.rounds} rounds × {duration} s, {args.connections} connections, median; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    ratio_cols = [("uring-probe", "shoal"), ("uring-probe", "haproxy"), ("shoal", "haproxy"),
                  ("uring-probe", "uring-probe-sqe"), ("uring-probe-multishot", "uring-probe")]
    ratio_cols = [(a, b) for a, b in ratio_cols if a in names and b in names]
    print("| workload | " + " | ".join(names) + " | " + " | ".join(f"{a}/{b}" for a, b in ratio_cols) + " |")
    print("|---|" + "---|" * (len(names) + len(ratio_cols)))
    for kind in ("short", "keep-alive"):
        for k in ("rps", "p50", "p99", "cpu"):
            v = med.get(f"{kind} {k}", {})
            print(f"| {kind} {labels[k]} | " + " | ".join(bench.fmt(v.get(n)) for n in names) + " | "
                  + " | ".join(bench.ratio(v.get(a), v.get(b)) for a, b in ratio_cols) + " |")
    if syscalls:
        print("\n| per request | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
    for kind, per in syscalls.items():
        for c in ("total", "io_uring_enter", "epoll_wait", "epoll_pwait", "epoll_ctl", "accept4", "connect",
                  "socket", "close", "shutdown", "setsockopt", "getsockopt", "recvfrom", "sendto", "read",
                  "write", "splice", "futex", "other", "io_uring SQEs"):
            cells = [per[n].get(c) if per.get(n) else None for n in names]
            if c not in ("total", "io_uring SQEs") and not any(cells):
                continue
            print(f"| {kind}: {c} | " + " | ".join("n/a" if x is None else f"{x:.2f}" for x in cells)
                  + " |")
    print(f"\nraw samples: {args.json}")


if __name__ == "__main__":
    main()
