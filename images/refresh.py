#!/usr/bin/env python3
"""Refresh the data in images/: base-image pins, the TF/CUDA table, the committed Dockerfiles.

    python images/refresh.py pins                 re-pin every base in base-images.cfg
    python images/refresh.py compat --source-md FILE [--tf 2.21.0 ...]
                                                  rebuild tf-compat.json from TensorFlow's published
                                                  tested build configurations (+ PyPI metadata for
                                                  releases the page does not list yet)
    python images/refresh.py dockerfiles [--golden G]
                                                  re-render Dockerfile.cpu/.gpu (from G: also rewrite
                                                  images/reference-{cpu,gpu}.json)

Pins are data, never hand-edited: a base made by images/make-base.sh is pinned to the image ID
docker gives it here; a registry base ('registry = name:tag') to its manifest digest
(docker buildx imagetools inspect), so the file always says which bytes FROM means.
"""

from __future__ import annotations

import argparse
import configparser
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# NVIDIA's CUDA release notes ("CUDA Toolkit and Corresponding Driver Versions", Linux) and the
# minor-version-compatibility minimum of each CUDA major (CUDA Compatibility guide).
CUDA_DRIVERS = {
    "10.0": ("410.48", "410.48"), "10.1": ("418.39", "418.39"), "11.0": ("450.36.06", "450.36.06"),
    "11.2": ("460.27.03", "450.80.02"), "11.8": ("520.61.05", "450.80.02"), "12.2": ("535.54.03", "525.60.13"),
    "12.3": ("545.23.06", "525.60.13"), "12.5": ("555.42.02", "525.60.13"),
}
ROW = re.compile(r"<tr><td>tensorflow-(\d+\.\d+)\.\d+</td><td>([\d.\- ,]+)</td><td>([^<]+)</td>"
                 r"<td>Bazel ([^<]+)</td><td>([\d.]+)</td><td>([\d.]+)</td></tr>")


def refresh_pins(cfg: Path) -> None:
    text = cfg.read_text()
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    for section in parser.sections():
        entry = parser[section]
        if entry.get("made_by"):
            out = subprocess.run([str(ROOT / entry["made_by"]), entry["tag"]], capture_output=True, text=True,
                                 check=True)
            pin = out.stdout.strip().splitlines()[-1]
        elif entry.get("registry"):
            out = subprocess.run(["docker", "buildx", "imagetools", "inspect", entry["registry"],
                                  "--format", "{{json .Manifest}}"], capture_output=True, text=True, check=True)
            name = entry["registry"].rsplit(":", 1)[0]
            pin = f"{name}@{json.loads(out.stdout)['digest']}"
        else:
            continue
        text = re.sub(rf"(\[{re.escape(section)}\][^\[]*?\nimage = )\S+", rf"\g<1>{pin}", text, count=1)
        print(f"{section}: {pin}")
    cfg.write_text(text)


def _pypi_row(version: str) -> dict[str, object]:
    """Python range and the and-cuda lower bounds, from the wheel's metadata (no full download)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp, "r.json")
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
                        "--quiet", "--report", str(report), "--target", tmp, "--only-binary=:all:",
                        "--platform", "manylinux_2_27_x86_64", "--python-version", "3.11",
                        f"tensorflow[and-cuda]=={version}"], check=True)
        meta = json.loads(report.read_text())["install"][0]["metadata"]
    pythons = sorted((c.rsplit(":: ", 1)[-1] for c in meta.get("classifier", []) if re.search(r"Python :: 3\.\d+$", c)),
                     key=lambda v: int(v.split(".")[1]))
    and_cuda = {}
    for req in meta.get("requires_dist", []):
        m = re.match(r"(nvidia-[\w-]+)\s*.*?>=\s*([\d.]+)", req)
        if m and "and-cuda" in req:
            and_cuda[m.group(1)] = m.group(2)
    cuda = ".".join(and_cuda["nvidia-cuda-runtime-cu12"].split(".")[:2])
    cudnn = ".".join(and_cuda["nvidia-cudnn-cu12"].split(".")[:2])
    return {"tensorflow": ".".join(version.split(".")[:2]), "python": f"{pythons[0]}-{pythons[-1]}", "cuda": cuda,
            "cudnn": cudnn, "source": "and_cuda", "and_cuda": dict(sorted(and_cuda.items()))}


def refresh_compat(source_md: Path, tf_versions: list[str], out: Path) -> None:
    text = source_md.read_text()
    linux_gpu = text.split("#### GPU", 1)[1].split("### macOS", 1)[0]
    rows = [{"tensorflow": m[0], "python": m[1].strip(), "compiler": m[2], "bazel": m[3], "cuda": m[5],
             "cudnn": m[4], "source": "tested_build_configurations"} for m in ROW.findall(linux_gpu)]
    listed = {r["tensorflow"] for r in rows}
    extra = [_pypi_row(v) for v in tf_versions if ".".join(v.split(".")[:2]) not in listed]
    data = json.loads(out.read_text()) if out.is_file() else {}
    data["cuda_drivers"] = {k: {"toolkit_driver": t, "minimum_driver": m} for k, (t, m) in CUDA_DRIVERS.items()}
    data["tensorflow"] = sorted(extra + rows, key=lambda r: tuple(int(x) for x in str(r["tensorflow"]).split(".")),
                                reverse=True)
    out.write_text(json.dumps(data, indent=2) + "\n")


def refresh_dockerfiles(golden: Path | None) -> None:
    sys.path.insert(0, str(ROOT))
    from envlock import __version__
    from envlock.image import compat, data
    from envlock.image.render import render
    from envlock.image.spec import ImageSpec, spec_from_golden

    for variant in ("cpu", "gpu"):
        ref = HERE / f"reference-{variant}.json"
        if golden is not None:
            from envlock.golden import load_golden

            g = load_golden(golden)
            spec = spec_from_golden(g.manifest, g.lockdown, variant=variant,
                                    base=data.base_for_python(g.manifest.python.version), golden_digest=g.digest,
                                    envlock_version=__version__, compat=compat.lookup(g.manifest.tensorflow.version))
            ref.write_text(spec.model_dump_json(indent=2) + "\n")
        spec = ImageSpec.model_validate_json(ref.read_text())
        (ROOT / f"Dockerfile.{variant}").write_text(render(spec))
        print(f"Dockerfile.{variant} <- {ref.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("pins")
    c = sub.add_parser("compat")
    c.add_argument("--source-md", type=Path, required=True, help="a copy of tensorflow/docs site/en/install/source.md")
    c.add_argument("--tf", nargs="*", default=[], help="TF releases to take from PyPI metadata if the page lacks them")
    d = sub.add_parser("dockerfiles")
    d.add_argument("--golden", type=Path)
    args = parser.parse_args()
    if args.what == "pins":
        refresh_pins(HERE / "base-images.cfg")
    elif args.what == "compat":
        refresh_compat(args.source_md, args.tf, HERE / "tf-compat.json")
    else:
        refresh_dockerfiles(args.golden)


if __name__ == "__main__":
    main()
