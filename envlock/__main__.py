"""Entry point of `envlock` and `python -m envlock`.

Kept tiny on purpose: a full `envlock capture` starts its TensorFlow child here, before the
CLI (Typer, pydantic) is imported, so the TF import overlaps everything else.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        # lazy: the TF child starts before typer and pydantic load
        from envlock.fingerprint.tf import prestart_for_argv

        prestart_for_argv(sys.argv[1:])
        # lazy: after the TF child started
        from envlock.cli import main as cli_main
    except KeyboardInterrupt:  # Ctrl-C before the CLI is loaded: the same line and code as after
        sys.stderr.write("envlock: interrupted\n")
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
