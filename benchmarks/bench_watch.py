"""Benchmark `envlock watch`: resident memory between checks, and /metrics latency under load.

Every figure is printed next to a baseline measured in the same run on the same machine:

* memory: the daemon's RSS after its first check and after many checks (a leak shows as growth),
  against a bare ``python -c "import envlock"`` process and a bare ``python -m http.server``.
  Target: under 80 MB.
* latency: N requests to /metrics from a SECOND process over a few keep-alive connections on
  loopback, while no check runs (--fingerprint-every 1h after the first check), against the same
  load on a stdlib HTTP/1.1 server returning a static body of the same size. Target: p99 < 20 ms.

Usage: python benchmarks/bench_watch.py [--requests 20000] [--connections 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

TARGET_RSS_MB = 80.0
TARGET_P99_MS = 20.0

STATIC_SERVER = textwrap.dedent("""
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    body = b"#" * int(sys.argv[1])
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = -1
        disable_nagle_algorithm = True
        def log_message(self, *a): pass
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()
""")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status in (200, 503):
                conn.close()
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def build_golden(path: Path) -> None:
    """A golden from a no-TF capture of this machine: the fingerprint check passes, no TF needed."""
    code = textwrap.dedent(f"""
        from datetime import datetime, timezone
        from envlock import __version__
        from envlock.capture import capture_manifest
        from envlock.golden import Golden, ProbeRecord, save_golden
        from envlock.models import LockdownSettings
        m = capture_manifest(include_tf=False)
        now = datetime.now(timezone.utc).isoformat()
        probe = ProbeRecord(name="gpu.matmul", tags=["gpu", "matmul"], group="canary", status="skipped",
                            reason="no GPU visible to TensorFlow")
        save_golden({str(path)!r}, Golden(envlock_version=__version__, created_at=now,
                    manifest=m, lockdown=LockdownSettings(), repeat=1, probes=[probe]))
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def start_daemon(golden: Path, state: Path, every: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "envlock", "watch", "--golden", str(golden), "--listen", f"127.0.0.1:{port}",
         "--state-dir", str(state), "--fingerprint-every", every, "--verify-every", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_http(port, "/healthz")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for the first check to finish
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/healthz")
        if conn.getresponse().read() != b"no check yet\n":
            break
        time.sleep(0.05)
    return proc, port


def count_checks(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/status")
    status = json.loads(conn.getresponse().read())
    return sum(sum(v.values()) for v in status["history"]["checks_by_kind"].values())


# ---- load client (runs in its own process) ----------------------------------------------------


def client_main(port: int, path: str, requests: int, connections: int) -> None:
    per_conn = requests // connections
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(per_conn):
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[i] += 1
            except OSError:
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            latencies[i].append(time.perf_counter() - t0)
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    flat = sorted(x * 1000 for lat in latencies for x in lat)
    q = statistics.quantiles(flat, n=100)
    print(json.dumps({"n": len(flat), "errors": sum(errors), "wall_s": wall, "p50_ms": q[49], "p90_ms": q[89],
                      "p99_ms": q[98], "max_ms": flat[-1], "rps": len(flat) / wall}))


def load(port: int, path: str, requests: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--client", str(port), path, str(requests), str(connections)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)


# ---- the benchmark ------------------------------------------------------------------------------


def bench_memory(golden: Path, tmp: Path) -> dict[str, float]:
    bare = subprocess.Popen([sys.executable, "-c", "import envlock, time; time.sleep(600)"])
    port = free_port()
    httpd = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    daemon, dport = start_daemon(golden, tmp / "state-mem", "0.2s")
    try:
        wait_http(port, "/")
        time.sleep(1.0)
        baselines = {"bare_import_mb": rss_mb(bare.pid), "bare_http_server_mb": rss_mb(httpd.pid)}
        first = rss_mb(daemon.pid)
        t0 = time.monotonic()
        while count_checks(dport) < 200:  # many checks: growth here would be a leak
            time.sleep(0.2)
        many = rss_mb(daemon.pid)
        return {**baselines, "daemon_after_first_check_mb": first, "daemon_after_200_checks_mb": many,
                "seconds_for_200_checks": time.monotonic() - t0}
    finally:
        for proc in (bare, httpd, daemon):
            stop(proc)


def bench_latency(golden: Path, tmp: Path, requests: int, connections: int) -> dict[str, dict[str, float]]:
    daemon, port = start_daemon(golden, tmp / "state-lat", "1h")  # no check runs during the load
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        body_size = len(conn.getresponse().read())
        load(port, "/metrics", 500, connections)  # warm-up
        envlock = load(port, "/metrics", requests, connections)
        idle_rss = rss_mb(daemon.pid)
    finally:
        stop(daemon)
    static = subprocess.Popen([sys.executable, "-c", STATIC_SERVER, str(body_size)], stdout=subprocess.PIPE, text=True)
    try:
        assert static.stdout is not None
        sport = int(static.stdout.readline())
        load(sport, "/metrics", 500, connections)
        baseline = load(sport, "/metrics", requests, connections)
    finally:
        stop(static)
    return {"envlock": envlock, "static": baseline, "meta": {"body_bytes": body_size, "rss_after_load_mb": idle_rss}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        golden = tmp / "golden.json"
        build_golden(golden)
        mem = bench_memory(golden, tmp)
        lat = bench_latency(golden, tmp, args.requests, args.connections)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print("\nresident memory (VmRSS)")
    for key, value in mem.items():
        print(f"  {key:32s} {value:7.1f} {'s' if key.startswith('seconds') else 'MB'}")
    daemon = max(mem["daemon_after_first_check_mb"], mem["daemon_after_200_checks_mb"])
    print(f"  daemon / bare import            {daemon / mem['bare_import_mb']:7.2f}x")
    print(f"  daemon / bare http.server       {daemon / mem['bare_http_server_mb']:7.2f}x")
    growth = mem["daemon_after_200_checks_mb"] - mem["daemon_after_first_check_mb"]
    print(f"  growth over 200 checks          {growth:+7.1f} MB")
    print(f"  target < {TARGET_RSS_MB:.0f} MB: {'met' if daemon < TARGET_RSS_MB else 'MISSED'}")
    e, s = lat["envlock"], lat["static"]
    print(f"\n/metrics latency: {e['n']} requests, {args.connections} keep-alive connections, "
          f"{lat['meta']['body_bytes']} bytes, from a second process")
    print(f"  {'':10s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'req/s':>8s} {'errors':>6s}")
    for name, r in (("envlock", e), ("static", s)):
        print(f"  {name:10s} {r['p50_ms']:8.3f} {r['p90_ms']:8.3f} {r['p99_ms']:8.3f} {r['max_ms']:8.2f} "
              f"{r['rps']:8.0f} {r['errors']:6d}")
    print(f"  p99 envlock / static            {e['p99_ms'] / s['p99_ms']:7.2f}x")
    print(f"  daemon RSS after the load       {lat['meta']['rss_after_load_mb']:7.1f} MB")
    print(f"  target p99 < {TARGET_P99_MS:.0f} ms: {'met' if e['p99_ms'] < TARGET_P99_MS else 'MISSED'}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
