#!/usr/bin/env python3
"""shoal side by side with HAProxy and a direct connection, in one run.

`just bench` (or `python3 bench/bench.py`) installs what it needs from
Debian's packages (haproxy, nginx-light, iperf3, wrk), builds shoal in
release mode, starts real backends on loopback (nginx serving a small file,
an iperf3 server), then measures the same workloads against:

  direct     a connection straight to the backend (the physical reference)
  haproxy    HAProxy, mode tcp, balance leastconn, nbthread = cores
  shoal      one shoal node, least-conn
  fleet      three shoal nodes in one fleet, clients spread over the nodes

Each throughput and latency workload runs --rounds times (default 3), the
systems side by side taking turns, and the median is kept. It writes
BENCHMARKS.md: the table from this run, every shoal figure as a
ratio to HAProxy's and to direct's, the machine, the versions, the command,
and the data-path decisions (bench/DECISIONS.md). Nothing in it is edited by
hand. Every load is bounded in time (DURATION seconds each) and count, and
only 127.0.0.1 is used. Only processes this script started are stopped, by
their PID.
"""

import argparse
import asyncio
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORES = os.cpu_count() or 1
PAGE = b"x" * 600  # the "small file"
STARTED = []  # Popen objects this script started


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, text=True, capture_output=True, **kw).stdout


LOGS = []  # stderr files of the processes started, for failure reports


def start(cmd, **kw):
    log_path = Path(tempfile.mkstemp(prefix="shoal-bench-", suffix=".log")[1])
    LOGS.append((cmd[0], log_path))
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log_path, "w"), **kw)
    STARTED.append(p)
    return p


def stop_all():
    for p in STARTED:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + 10
    for p in STARTED:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    tails = "\n".join(f"--- {name} ({path}):\n" + "\n".join(path.read_text().splitlines()[-5:])
                       for name, path in LOGS[-3:])
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s\n{tails}")


def ensure_tools():
    need = {"haproxy": "haproxy", "nginx": "nginx-light", "iperf3": "iperf3", "wrk": "wrk"}
    missing = [pkg for tool, pkg in need.items() if shutil.which(tool) is None]
    if missing:
        log(f"installing {' '.join(missing)} from Debian's packages")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run("apt-get update -qq", shell=True, check=True, env=env)
        subprocess.run(f"apt-get install -y -qq {' '.join(missing)}", shell=True, check=True, env=env)


def raise_fd_limit():
    want = 262144
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, PermissionError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ----- process figures -----

def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, all threads
    return total / tick


# ----- the systems under test -----

class System:
    def __init__(self, name, web_ports, bulk_ports, procs):
        self.name, self.web_ports, self.bulk_ports, self.procs = name, web_ports, bulk_ports, procs
        self.pids = [p.pid for p in procs]

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_backends(work):
    conf = work / "nginx.conf"
    www = work / "www"
    www.mkdir()
    (www / "index.html").write_bytes(PAGE)
    conf.write_text(f"""
worker_processes 1;
worker_rlimit_nofile 200000;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 100000; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_header_timeout 300s;
  server {{ listen 127.0.0.1:18081 backlog=4096; root {www}; }}
  server {{ listen 127.0.0.1:18082 backlog=4096; root {www}; }}
}}
""")
    start(["nginx", "-c", str(conf), "-g", "daemon off;"])
    start(["iperf3", "-s", "-B", "127.0.0.1", "-p", "15201"])
    for p in (18081, 18082, 15201):
        wait_port(p)


def start_haproxy(work, maxconn):
    conf = work / "haproxy.cfg"
    conf.write_text(f"""
global
  nbthread {CORES}
  maxconn {maxconn}
defaults
  mode tcp
  timeout connect 2s
  timeout client 300s
  timeout server 300s
frontend web
  bind 127.0.0.1:28080 backlog 4096
  default_backend web
backend web
  balance leastconn
  server s1 127.0.0.1:18081
  server s2 127.0.0.1:18082
frontend bulk
  bind 127.0.0.1:28201
  default_backend bulk
backend bulk
  server b1 127.0.0.1:15201
""")
    p = start(["haproxy", "-db", "-f", str(conf)])
    wait_port(28080)
    return System("haproxy", [28080], [28201], [p])


def shoal_config(name, web, bulk, admin, cluster=None):
    text = f"""
[node]
name = "{name}"
admin = "127.0.0.1:{admin}"
drain_timeout_ms = 1000

[[listener]]
name = "web"
bind = "127.0.0.1:{web}"
policy = "least-conn"
backlog = 4096
backends = ["127.0.0.1:18081", "127.0.0.1:18082"]

[[listener]]
name = "bulk"
bind = "127.0.0.1:{bulk}"
backends = ["127.0.0.1:15201"]
"""
    if cluster:
        text += cluster
    return text


def start_shoal(work, binary, name="shoal", slot=0):
    conf = work / f"{name}.toml"
    web, bulk, admin = 21080 + 10 * slot, 21201 + 10 * slot, 21190 + 10 * slot
    conf.write_text(shoal_config("bench", web, bulk, admin))
    env = dict(os.environ, RUST_LOG="warn")
    p = start([str(binary), "run", "-c", str(conf)], env=env)
    wait_port(web)
    return System(name, [web], [bulk], [p])


def start_fleet(work, binary):
    certs = work / "certs"
    if not certs.exists():
        subprocess.run([str(binary), "certs", "init", str(certs)], check=True, capture_output=True)
    procs, web = [], []
    seeds = ", ".join(f'"127.0.0.1:{27946 + i}"' for i in range(3))
    for i in range(3):
        name = f"node-{i + 1}"
        if not (certs / f"{name}.pem").exists():
            subprocess.run([str(binary), "certs", "node", name, str(certs)], check=True, capture_output=True)
        cluster = f"""
[cluster]
bind = "127.0.0.1:{27946 + i}"
seeds = [{seeds}]
ca = "{certs}/ca.pem"
cert = "{certs}/{name}.pem"
key = "{certs}/{name}.key"
warm_start_timeout_ms = 500
"""
        conf = work / f"{name}.toml"
        conf.write_text(shoal_config(name, 22080 + i, 22201 + i, 22191 + i, cluster))
        env = dict(os.environ, RUST_LOG="warn")
        procs.append(start([str(binary), "run", "-c", str(conf)], env=env))
        web.append(22080 + i)
    for port in web:
        wait_port(port)
    time.sleep(2)  # let the fleet converge before loading it
    return System("fleet", web, [22201], procs)


# ----- workloads -----

def iperf(port, streams, duration, pids):
    before = cpu_seconds(pids) if pids else 0
    out = sh(f"iperf3 -c 127.0.0.1 -p {port} -t {duration} -P {streams} -J")
    after = cpu_seconds(pids) if pids else 0
    r = json.loads(out)["end"]["sum_received"]
    gbytes = r["bytes"] / 1e9
    cpu_per_gb = (after - before) / gbytes if pids and gbytes > 0 else None
    return r["bits_per_second"] / 1e9, cpu_per_gb


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    pct = {}
    for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        pct[int(p)] = float(v) * unit[u]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return rps, pct.get(50), pct.get(99), errors.group(0) if errors else "", total


def wrk(ports, duration, conns, close, pids=None):
    """Requests/s, p50, p99, errors, and with `pids` the CPU-seconds those
    processes spent per 10^5 requests."""
    header = '-H "Connection: close"' if close else ""
    per = max(1, conns // len(ports))
    before = cpu_seconds(pids) if pids else 0
    procs = [
        subprocess.Popen(f"wrk -t1 -c{per} -d{duration}s --latency {header} http://127.0.0.1:{p}/index.html",
                         shell=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for p in ports
    ]
    results = [parse_wrk(p.communicate(timeout=duration + 60)[0]) for p in procs]
    after = cpu_seconds(pids) if pids else 0
    rps = sum(r[0] for r in results)
    p50 = max(r[1] or 0 for r in results)
    p99 = max(r[2] or 0 for r in results)
    errs = "; ".join(r[3] for r in results if r[3])
    total = sum(r[4] for r in results)
    cpu = (after - before) * 1e5 / total if pids and total else None
    return rps, p50, p99, errs, cpu


# The system calls counted per request (perf's syscall tracepoints; every
# other call is in "other").
SYSCALLS = ["accept4", "connect", "socket", "close", "shutdown", "getsockopt", "setsockopt",
            "epoll_wait", "epoll_pwait", "epoll_ctl", "read", "recvfrom", "write", "sendto",
            "readv", "writev", "recvmsg", "sendmsg", "splice", "futex", "io_uring_enter"]


def syscall_profile(ports, duration, conns, close, pids):
    """System calls per request of `pids` (every thread) under one wrk run:
    {syscall: calls per request, "total": ...}, counted by `perf stat` on
    the syscall tracepoints (a count, not a timing; the tracepoints cost a
    little CPU, so the rates of this pass are not reported). None if perf
    cannot count here."""
    if not pids or shutil.which("perf") is None:
        return None
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{c}" for c in SYSCALLS]
    out = Path(tempfile.mkstemp(prefix="shoal-bench-perf-", suffix=".csv")[1])
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(out), "-e", ",".join(events),
                             "-p", ",".join(str(p) for p in pids), "--", "sleep", str(duration + 1)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    header = '-H "Connection: close"' if close else ""
    per = max(1, conns // len(ports))
    procs = [subprocess.Popen(f"wrk -t1 -c{per} -d{duration}s {header} http://127.0.0.1:{p}/index.html",
                              shell=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for p in ports]
    total = sum(int(re.search(r"(\d+) requests in", p.communicate(timeout=duration + 60)[0]).group(1))
                for p in procs)
    perf.wait(timeout=duration + 30)
    counts = {}
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) < 3 or not parts[0].strip().isdigit():
            continue
        counts[parts[2].split(":")[-1].removeprefix("sys_enter_")] = int(parts[0])
    if not total or "sys_enter" not in counts:
        return None
    per_request = {c: counts.get(c, 0) / total for c in SYSCALLS}
    per_request["total"] = counts["sys_enter"] / total
    per_request["other"] = per_request["total"] - sum(per_request[c] for c in SYSCALLS)
    return per_request


async def hold_connections(ports, n, hold_s, on_open):
    """Opens `n` idle connections spread over `ports`, calls `on_open` once
    all are established, then closes them."""
    sem = asyncio.Semaphore(512)
    writers = []

    async def one(i):
        async with sem:
            for _ in range(50):
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", ports[i % len(ports)])
                    writers.append(w)
                    return
                except OSError:
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(one(i) for i in range(n)))
    await asyncio.sleep(hold_s)
    result = on_open(len(writers))
    for w in writers:
        w.close()
    await asyncio.sleep(0.5)
    return result


def idle_memory(system_ports, pids, n):
    """Bytes of proxy RSS per idle proxied connection at `n` connections."""
    before = sum(rss_kib(p) for p in pids)

    def measure(opened):
        return opened, sum(rss_kib(p) for p in pids)

    opened, after = asyncio.run(hold_connections(system_ports, n, 2.0, measure))
    time.sleep(1)
    if opened < n:
        log(f"only {opened} of {n} connections opened")
    return (after - before) * 1024 / max(1, opened)


# ----- the run -----

def core_figures():
    """(benchmark, median time) of the core's criterion benchmarks."""
    log("criterion: cargo bench -p shoal-core --bench core")
    text = subprocess.run(["cargo", "bench", "-p", "shoal-core", "--bench", "core", "--", "--noplot"],
                          cwd=ROOT, check=True, text=True, capture_output=True).stdout
    figures = []
    name = None
    for line in text.splitlines():
        m = re.search(r"time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
        if m:
            figures.append((line[:m.start()].strip() or name, m.group(1)))
        elif line and not line[0].isspace():
            name = line.strip()
    return figures


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    return f"{v}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds per workload (at most 10)")
    ap.add_argument("--connections", type=int, default=32, help="concurrent wrk connections")
    ap.add_argument("--idle", default="5000,20000", help="idle connection counts for the memory rows")
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--systems", default="direct,haproxy,shoal,fleet",
                    help="which systems to measure (comma-separated), for quick experiments")
    ap.add_argument("--no-memory", action="store_true", help="skip the idle-connection memory rows")
    ap.add_argument("--no-core", action="store_true",
                    help="skip the core's criterion figures (the backend choice, a report's cost)")
    ap.add_argument("--no-syscalls", action="store_true",
                    help="skip the pass that counts system calls per request with perf")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of every throughput and latency workload, taking turns over the"
                         " systems; each figure is the median (default 3)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=PATH",
                    help="also measure the shoal binary at PATH as system NAME (single node, same"
                         " config), for A/B runs of a data-path change; its ratios to HAProxy are"
                         " printed after the table (repeatable)")
    args = ap.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant)
    duration = min(args.duration, 10)
    ensure_tools()
    fds = raise_fd_limit()
    log(f"open file limit {fds}")
    # A proxied connection costs the proxy two descriptors: what fits under
    # this machine's limit bounds the idle rows and HAProxy's maxconn.
    conn_max = (fds - 256) // 2
    idle_counts = []
    capped = []
    for n in (int(x) for x in args.idle.split(",") if x):
        if n > conn_max:
            capped.append(n)
            n = conn_max - conn_max % 1000
        if n not in idle_counts:
            idle_counts.append(n)
    if not args.skip_build:
        log("building shoal (release)")
        subprocess.run("cargo build --release -p shoal", shell=True, check=True, cwd=ROOT)
    binary = ROOT / "target" / "release" / "shoal"

    work = Path(tempfile.mkdtemp(prefix="shoal-bench-"))
    work.chmod(0o755)  # nginx's workers run as another user and must read the page
    rows = {}  # workload -> {system: value}
    syscalls = {}  # "short connection" | "keep-alive request" -> {system: {syscall: per request}}
    try:
        start_backends(work)
        starters = {
            "direct": lambda: System("direct", [18081], [15201], []),
            "haproxy": lambda: start_haproxy(work, conn_max),
            "shoal": lambda: start_shoal(work, binary),
            "fleet": lambda: start_fleet(work, binary),
        }
        for i, (vname, vpath) in enumerate(variants.items()):
            starters[vname] = lambda p=vpath, n=vname, k=i: start_shoal(work, Path(p), n, 1 + k)
        wanted = args.systems.split(",") + list(variants)
        # Every system runs side by side (each on its own ports) and the
        # rounds take turns over them, so that a drift of the machine (other
        # load, thermal, page cache) spreads over all systems alike; each
        # figure is the median of the rounds.
        systems = [make() for name, make in starters.items() if name in wanted]
        samples = {}  # workload -> {system: [value per round]}

        def add(row, system, value):
            samples.setdefault(row, {}).setdefault(system, []).append(value)

        for r in range(args.rounds):
            for s in systems:
                log(f"round {r + 1}/{args.rounds}: measuring {s.name}")
                for streams in (1, 8):
                    gbps, cpu = iperf(s.bulk_ports[0], streams, duration, s.pids)
                    add(f"bulk throughput, {streams} stream{'s' if streams > 1 else ''} (Gbit/s)", s.name, gbps)
                    if streams == 8:
                        add("CPU per GB forwarded, 8 streams (CPU-seconds)", s.name, cpu)
                rps, p50, p99, errs, cpu = wrk(s.web_ports, duration, args.connections, close=True, pids=s.pids)
                add("short connections (requests/s)", s.name, rps)
                add("short connections p50 (ms)", s.name, p50)
                add("short connections p99 (ms)", s.name, p99)
                add("CPU per 10⁵ short connections (CPU-seconds)", s.name, cpu)
                if errs:
                    log(f"{s.name} short: {errs}")
                rps, p50, p99, errs, cpu = wrk(s.web_ports, duration, args.connections, close=False, pids=s.pids)
                add("keep-alive (requests/s)", s.name, rps)
                add("keep-alive p99 (ms)", s.name, p99)
                add("CPU per 10⁵ keep-alive requests (CPU-seconds)", s.name, cpu)
                if errs:
                    log(f"{s.name} keep-alive: {errs}")
        # One more pass, after the rounds, counting system calls per request
        # (the tracepoints slow the process a little, so no rate from it).
        for s in systems:
            if not args.no_syscalls and s.pids and len(s.pids) == 1:
                for close, kind in ((True, "short connection"), (False, "keep-alive request")):
                    log(f"counting {s.name}'s system calls per {kind}")
                    profile = syscall_profile(s.web_ports, duration, args.connections, close, s.pids)
                    if profile:
                        syscalls.setdefault(kind, {})[s.name] = profile
        for s in systems:
            s.stop()
        for row, per_system in samples.items():
            for name, values in per_system.items():
                known = sorted(v for v in values if v is not None)
                rows.setdefault(row, {})[name] = known[len(known) // 2] if known else None
        for name, make in starters.items():
            if name not in wanted or name == "direct" or args.no_memory:
                continue
            # Each memory row on a fresh process: allocators keep what earlier
            # loads used, which would hide the cost of new connections.
            for n in idle_counts:
                s = make()
                rows.setdefault(f"memory per idle connection at {n:,} (bytes of RSS)", {})[s.name] = idle_memory(
                    s.web_ports, s.pids, n)
                s.stop()
    finally:
        stop_all()

    versions = {
        "haproxy": sh("haproxy -v | head -1").strip(),
        "nginx": subprocess.run("nginx -v", shell=True, text=True, capture_output=True).stderr.strip(),
        "iperf3": sh("iperf3 --version | head -1").strip(),
        "wrk": subprocess.run("wrk -v", shell=True, text=True, capture_output=True).stdout.splitlines()[0].strip(),
        "shoal": sh(f"git -C {ROOT} rev-parse --short HEAD").strip(),
        "rustc": sh("rustc --version").strip(),
    }
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown")
    lower_is_better = ("p50", "p99", "memory", "CPU")
    out = [
        "# Benchmarks",
        "",
        "Generated by `just bench` (`python3 bench/bench.py`); do not edit by hand.",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {CORES} cores ({cpu}), {os.uname().sysname} {os.uname().release}",
        f"- command: `python3 bench/bench.py --duration {duration} --connections {args.connections} --idle {args.idle}"
        f" --rounds {args.rounds}`",
        f"- each throughput and latency figure is the median of {args.rounds} rounds; the systems run side by"
        " side and take turns within each round; each memory row is one run on a fresh process.",
        "- versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()),
        f"- open file limit {fds} (hard limit of this machine): at most {conn_max:,} proxied connections,"
        + (f" so the idle rows for {', '.join(f'{c:,}' for c in capped)} ran at {idle_counts[-1]:,}" if capped else "")
        + ".",
        "- loopback only; load generators, backends and proxies share the cores (not pinned: with 2 cores,"
        " pinning the proxy to one core starves either it or the load generator).",
        "- direct = a client straight to one backend; haproxy = mode tcp, balance leastconn, nbthread "
        f"{CORES}; shoal = one node, least-conn; fleet = three shoal nodes in one fleet, web clients spread"
        " over the three (bulk through node 1).",
        f"- shoal/haproxy: higher is better for throughput and request rates; lower is better for {', '.join(lower_is_better)}.",
        "",
        "| workload | direct | haproxy | shoal | fleet | shoal/haproxy | shoal/direct | fleet/haproxy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in rows.items():
        d, h, s, f = (v.get(k) for k in ("direct", "haproxy", "shoal", "fleet"))
        out.append(f"| {name} | {fmt(d)} | {fmt(h)} | {fmt(s)} | {fmt(f)} | {ratio(s, h)} | {ratio(s, d)} | {ratio(f, h)} |")
    if syscalls:
        names = [n for n in ("haproxy", "shoal") if any(n in v for v in syscalls.values())]
        out += ["", "## System calls per request", "",
                "Counted by `perf stat` on the syscall tracepoints of the proxy process (every thread) during"
                f" one more {duration} s wrk run of each kind after the rounds, divided by the requests that run"
                " completed (a short connection is one request). Calls not listed are in *other*.", ""]
        kinds = list(syscalls)
        out.append("| system call | " + " | ".join(f"{n}, per {k}" for k in kinds for n in names) + " |")
        out.append("|---|" + "---|" * (len(kinds) * len(names)))
        for c in ["total"] + SYSCALLS + ["other"]:
            cells = [syscalls[k].get(n, {}).get(c) for k in kinds for n in names]
            if c not in ("total", "other") and not any(cells):
                continue
            out.append(f"| {c} | " + " | ".join("n/a" if v is None else f"{v:.2f}" for v in cells) + " |")
    if not args.no_core:
        core = core_figures()
        out += ["", "## The core's hot path (criterion)", "",
                "`cargo bench -p shoal-core --bench core` (the median of criterion's estimate), after the"
                " runs above: one `acquire` + `release` of a backend by least-conn (the choice every client"
                " connection makes, O(backends) up to 64 backends, two sampled candidates above), and a"
                " report's encoding, decoding and application. Times, not ratios: there is no HAProxy"
                " counterpart to run beside it.", "",
                "| benchmark | time |", "|---|---|"]
        out += [f"| {name} | {t} |" for name, t in core]
    decisions = ROOT / "bench" / "DECISIONS.md"
    if decisions.exists():
        out += ["", decisions.read_text().strip()]
    Path(args.out).write_text("\n".join(out) + "\n")
    log(f"wrote {args.out}")
    print("\n".join(out))
    if variants:
        names = ["haproxy", "shoal"] + list(variants)
        print("\nvariants (value, ratio to haproxy):")
        print("| workload | " + " | ".join(names) + " |")
        for name, v in rows.items():
            cells = [f"{fmt(v.get(n))} ({ratio(v.get(n), v.get('haproxy'))})" for n in names]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
