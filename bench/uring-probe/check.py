#!/usr/bin/env python3
"""Correctness check of uring-probe (not a benchmark): 40 concurrent
connections each send 1 MB and half-close; a Python backend reads to EOF,
answers with the byte count and 3 MB, and closes. With only 8 buffers per
thread the ENOBUFS path is exercised. Then a refused backend must close the
client, and the probe must hold no descriptor more than it started with.

    python3 bench/uring-probe/check.py [extra probe args, e.g. --recv multishot]

Loopback only; bounded (40 connections, 30 s timeouts); stops only the probe
it started, by PID.
"""
import os, socket, subprocess, sys, threading, time
from pathlib import Path

PROBE = Path(__file__).resolve().parent / "target" / "release" / "uring-probe"
LISTEN, BACKEND, DEAD = 39100, 39101, 39102

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", BACKEND))
srv.listen(64)


def handle(c):
    n = 0
    while d := c.recv(65536):
        n += len(d)
    c.sendall(str(n).encode() + b"\n" + b"y" * 3_000_000)
    c.close()


def serve():
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


threading.Thread(target=serve, daemon=True).start()
p = subprocess.Popen([str(PROBE), "--listen", f"127.0.0.1:{LISTEN}", "--backend", f"127.0.0.1:{BACKEND}",
                      "--threads", "2", "--buffers", "8", *sys.argv[1:]], stderr=subprocess.DEVNULL)
q = subprocess.Popen([str(PROBE), "--listen", f"127.0.0.1:{LISTEN + 10}", "--backend", f"127.0.0.1:{DEAD}",
                      *sys.argv[1:]], stderr=subprocess.DEVNULL)
failures = []
try:
    time.sleep(0.5)
    fds_before = len(os.listdir(f"/proc/{p.pid}/fd"))

    def one(i):
        try:
            s = socket.create_connection(("127.0.0.1", LISTEN), timeout=30)
            s.sendall(b"x" * (1_000_000 + i))
            s.shutdown(socket.SHUT_WR)
            data = b""
            while d := s.recv(1 << 20):
                data += d
            head, rest = data.split(b"\n", 1)
            assert int(head) == 1_000_000 + i and len(rest) == 3_000_000, (head, len(rest))
        except Exception as e:  # noqa: BLE001
            failures.append(f"connection {i}: {e!r}")

    ts = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    [t.start() for t in ts]
    [t.join(timeout=60) for t in ts]
    s = socket.create_connection(("127.0.0.1", LISTEN + 10), timeout=5)
    if s.recv(10) != b"":
        failures.append("refused backend: the client was not closed")
    time.sleep(0.2)
    fds_after = len(os.listdir(f"/proc/{p.pid}/fd"))
    if fds_after != fds_before:
        failures.append(f"descriptors: {fds_before} before, {fds_after} after")
finally:
    for proc in (p, q):
        proc.terminate()
        proc.wait()
print("\n".join(failures) or "ok: 40 half-closed transfers of 1 MB up / 3 MB down, refused backend, no descriptor leak")
sys.exit(1 if failures else 0)
