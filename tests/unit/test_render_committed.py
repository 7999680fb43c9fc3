"""The committed top-level Dockerfile.cpu/.gpu are exactly what the template renders today
from images/reference-{cpu,gpu}.json (re-render with `python images/refresh.py dockerfiles`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.image.render import render
from envlock.image.spec import ImageSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_committed_dockerfile_equals_a_fresh_render(variant: str) -> None:
    spec = ImageSpec.model_validate_json((ROOT / "images" / f"reference-{variant}.json").read_text())
    assert spec.variant == variant
    assert (ROOT / f"Dockerfile.{variant}").read_text() == render(spec), (
        f"Dockerfile.{variant} is stale: run `python images/refresh.py dockerfiles` and commit the result")


def test_reference_specs_use_a_committed_pin() -> None:
    from envlock.image.data import pinned_bases

    pins = {b.image for b in pinned_bases()}
    for variant in ("cpu", "gpu"):
        spec = ImageSpec.model_validate_json((ROOT / "images" / f"reference-{variant}.json").read_text())
        assert spec.base.image in pins


def test_compat_table_rows_have_drivers_for_their_cuda() -> None:
    from envlock.image import compat

    row = compat.lookup("2.21.0")
    assert row is not None and row.cuda == "12.5" and row.minimum_driver == "525.60.13"
    assert compat.driver_problem(row, "470.57.02") is not None  # too old for CUDA 12
    assert compat.driver_problem(row, "560.35.03") is None
    assert "minor-version" in (compat.driver_problem(row, "535.54.03") or "")
    assert compat.python_supported(row, "3.11.7") is True and compat.python_supported(row, "3.9.1") is False
    assert compat.lookup("1.15.0") is None


def test_refresh_script_parses_the_published_table_format(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("refresh", ROOT / "images" / "refresh.py")
    assert spec is not None and spec.loader is not None
    refresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh)
    md = tmp_path / "source.md"
    md.write_text(
        "### Linux\n\n#### CPU\n\n<table></table>\n\n#### GPU\n\n<table>\n"
        "<tr><td>tensorflow-2.18.0</td><td>3.9-3.12</td><td>Clang 17.0.6</td><td>Bazel 6.5.0</td>"
        "<td>9.3</td><td>12.5</td></tr>\n"
        "<tr><td>tensorflow-2.14.0</td><td>3.9-3.11</td><td>Clang 16.0.0</td><td>Bazel 6.1.0</td>"
        "<td>8.7</td><td>11.8</td></tr>\n</table>\n\n### macOS\n")
    out = tmp_path / "tf-compat.json"
    refresh.refresh_compat(md, [], out)
    import json

    rows = json.loads(out.read_text())["tensorflow"]
    assert [(r["tensorflow"], r["cuda"], r["cudnn"], r["python"]) for r in rows] == [
        ("2.18", "12.5", "9.3", "3.9-3.12"), ("2.14", "11.8", "8.7", "3.9-3.11")]
