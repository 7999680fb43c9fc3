"""``python -m envlock.fleet.worker``: read a share of a fleet's files into rows, on another core.

Parsing the JSON is most of ``envlock fleet``'s time (benchmarks/bench_fleet.py: 8 of 17 s for 10,000
files on one core), and one Python process parses on one core. ``envlock.fleet.files`` hands a share
of the paths to this process (a JSON list on stdin) and reads the rest itself; this process prints one
JSON line per path, in order: ``{"row": ...}`` or ``{"problem": "..."}`` (the file's BadFileError).
It reads only the files it is given and writes nothing but its stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from envlock.errors import BadFileError
from envlock.fleet.rows import MachineRow, ProbeCell, row_of_document
from envlock.store import read_json_file


def row_to_json(row: MachineRow) -> dict[str, Any]:
    return {"source": row.source, "kind": row.kind, "hostname": row.hostname, "manifest_digest": row.manifest_digest,
            "envlock_version": row.envlock_version, "profile": row.profile, "numeric_class": row.numeric_class,
            "cells": {name: list(cell) for name, cell in row.cells.items()}, "golden_class": row.golden_class,
            "cpu": row.cpu}


def row_from_json(data: dict[str, Any]) -> MachineRow:
    """The worker's row back (its own output: the types are checked as it is rebuilt)."""
    cells = {sys.intern(str(name)): ProbeCell(str(status), None if digest is None else str(digest),
                                              None if ulp is None else float(ulp))
             for name, (status, digest, ulp) in dict(data["cells"]).items()}
    optional = {key: None if data.get(key) is None else str(data[key])
                for key in ("hostname", "manifest_digest", "envlock_version", "numeric_class", "golden_class", "cpu")}
    kind = data["kind"]
    if kind not in ("golden", "verify"):
        raise ValueError(f"a worker row of kind {kind!r}")
    return MachineRow(source=str(data["source"]), kind=kind, profile=str(data["profile"]), cells=cells,
                      probe_set=tuple(sorted(cells)), **optional)


def main() -> int:
    paths = json.load(sys.stdin)
    out = sys.stdout
    for path in paths:
        try:
            line: dict[str, Any] = {"row": row_to_json(row_of_document(str(path), read_json_file(path)))}
        except BadFileError as exc:
            line = {"problem": exc.problem}
        out.write(json.dumps(line) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
