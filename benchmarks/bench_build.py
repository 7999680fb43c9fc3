"""What `envlock build` costs, and what its image weighs, against baselines from the same run.

    python benchmarks/bench_build.py [--golden G] [--base-image envlock-base:bookworm]

1. First build with Docker's layer cache off (--no-cache; the wheelhouse may be warm), then a
   second build with nothing changed: wall time of each (target for the second: < 10 s) and
   their ratio.
2. Image size against a plain `FROM <same base>` + `pip install tensorflow-cpu==<golden's>`
   image built now, offline from the same wheelhouse (served to the build over HTTP on the
   docker bridge, `--no-cache-dir`, as a careful Dockerfile would). Target: no larger.

Needs a running dockerd; makes the base with images/make-base.sh if it is missing.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return elapsed, proc


def image_size(ref: str) -> int:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", ref], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


def bridge_gateway() -> str:
    """The host's address on docker0, where build containers can reach a server on the host."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True, check=True)
    return out.stdout.split(" inet ", 1)[1].split("/", 1)[0]


def baseline_image(base_id: str, tf_requirement: str, wheelhouse: Path, tag: str) -> float:
    """FROM <base> + pip install tensorflow-cpu, offline from our wheelhouse served over HTTP."""
    from envlock.image import docker_engine

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

    handler = functools.partial(QuietHandler, directory=str(wheelhouse))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)  # noqa: S104 - the build container must reach it
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = bridge_gateway(), server.server_address[1]
    try:
        with tempfile.TemporaryDirectory() as ctx:
            Path(ctx, "Dockerfile").write_text(
                f"FROM {base_id}\n"
                f"RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --no-index "
                f"--trusted-host {host} --find-links http://{host}:{port}/ '{tf_requirement}'\n")
            start = time.perf_counter()
            docker_engine.build(docker_engine.connect(), Path(ctx), tag=tag, nocache=True)
            return time.perf_counter() - start
    finally:
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--golden", type=Path, help="golden to build (default: record one now)")
    parser.add_argument("--base-image", default="envlock-base:bookworm")
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("ENVLOCK_CACHE_DIR") or
                                                               Path.home() / ".cache" / "envlock"))
    args = parser.parse_args()
    env = {**os.environ, "ENVLOCK_CACHE_DIR": str(args.cache_dir)}
    envlock = [sys.executable, "-m", "envlock"]
    subprocess.run([str(ROOT / "images" / "make-base.sh"), args.base_image], check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        golden = args.golden
        if golden is None:
            golden = Path(tmp, "golden.json")
            timed([*envlock, "capture", "--golden", "-o", str(golden)], env)
        tag = "envlock-bench/build:cpu"
        build = [*envlock, "build", "--golden", str(golden), "--base-image", args.base_image, "--tag", tag]
        first, _ = timed([*build, "--no-cache"], env)
        second, proc = timed(build, env)
        rebuilt = [line for line in proc.stderr.splitlines() if line.startswith(" ---> Running in")]
        print(f"first build (--no-cache):            {first:7.1f} s", flush=True)
        print(f"second build, nothing changed:       {second:7.1f} s  (target < 10 s; ratio to first "
              f"{second / first:.3f}; {len(rebuilt)} steps re-run)", flush=True)
        manifest = json.loads(golden.read_text())["manifest"]
        dists = {d["name"].lower().replace("_", "-"): d["version"] for d in manifest["python"]["distributions"]}
        tf_name = next(n for n in ("tensorflow-cpu", "tensorflow") if n in dists)
        base_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", args.base_image],
                                 capture_output=True, text=True, check=True).stdout.strip()
        baseline_tag = "envlock-bench/plain-tf:cpu"
        baseline_build = baseline_image(base_id, f"{tf_name}=={dists[tf_name]}", args.cache_dir / "wheelhouse",
                                        baseline_tag)
    ours, plain, base = image_size(tag), image_size(baseline_tag), image_size(args.base_image)
    mib = 1024 * 1024
    print(f"baseline build (plain pip install):  {baseline_build:7.1f} s  (first envlock build / baseline "
          f"{first / baseline_build:.2f})")
    print(f"image size, envlock:                 {ours / mib:7.0f} MiB")
    print(f"image size, FROM base + pip install {tf_name}: {plain / mib:7.0f} MiB  (envlock / plain "
          f"{ours / plain:.3f}; target <= 1)")
    print(f"base image alone:                    {base / mib:7.0f} MiB  (added over base: envlock "
          f"{(ours - base) / mib:.0f} MiB, plain {(plain - base) / mib:.0f} MiB)")


if __name__ == "__main__":
    main()
