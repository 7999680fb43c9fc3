"""Bounds on what an input file (or option) may ask of envlock: one place, standard library only.

A golden is untrusted input -- people download, share and bake it into images -- so every size,
depth and number it carries has a ceiling well above anything envlock itself writes (a golden is
about 100 KB, at most a dozen levels deep) and far below what would exhaust memory or time.
"""

from __future__ import annotations

MAX_INPUT_BYTES = 16 * 1024 * 1024  # any file envlock reads: goldens, manifests, requirements
MAX_JSON_DEPTH = 64  # nesting levels of arrays/objects; envlock's own files use about a dozen
# Arrays + objects in one JSON file (a golden has about 330): 16 MiB of "{}," would otherwise
# become 5 million dicts, gigabytes of memory from a small download.
MAX_JSON_CONTAINERS = 100_000
MAX_INTERMEDIATES = 1024  # intermediates per probe in a golden (ctx.record, a traced Keras model)
MAX_REPEAT = 100  # runs per probe (a golden's ``repeat`` and ``--repeat``)
MAX_SEED = 2**32 - 1  # numpy's legacy seeding accepts 0..2**32-1; TF and Python take those too
MAX_THREADS = 1024  # TF intra/inter-op thread counts (0 = TensorFlow's default)
MAX_WRITE_STALL_SECONDS = 60.0  # writing through to a FIFO/device whose reader takes nothing
