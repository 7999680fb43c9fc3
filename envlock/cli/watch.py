"""`envlock watch`: keep checking this machine against a golden; report over HTTP, Prometheus, NFD."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.common import GoldenOption, TrustedKeyOption, app, resolve_golden_path
from envlock.daemon import loop
from envlock.daemon.config import WatchConfig, cores_argv, default_state_dir, parse_duration, parse_listen, verify_argv
from envlock.daemon.results import render_once
from envlock.signing import load_trusted_keys
from envlock.store import check_outputs

# Plain paragraphs are rewrapped to the terminal's width; a paragraph starting with \b (click's
# marker) is printed as written, so its lines must fit 80 columns (tests/unit/test_cli_help.py).
WATCH_HELP = """Keep checking this machine against GOLDEN and report its health.

The checks:

\b
  fingerprint  every --fingerprint-every: capture this machine without
               TensorFlow (in the daemon) and diff it against the golden's
               manifest (the tensorflow section is left to verify).
  verify       every --verify-every: run `envlock verify GOLDEN --json` in a
               child process with a time limit; a hang is killed with its
               process group and recorded as a timeout, a crash as an error.
               TensorFlow is never imported into the daemon. --verify-every 0
               disables it.
  cores        every --cores-every (off by default): run `envlock cores
               --json` (probes pinned to each CPU in turn, compared across
               CPUs) as a child like verify, never at the same time; exports
               envlock_cpu_healthy{cpu} and the NFD label
               envlock.cores-healthy. It quarantines nothing (docs/watch.md).

A difference present while a verify of this golden reproduced (same field, same value) is tolerated
by later fingerprint checks, e.g. the determinism variables an `envlock build` image sets; a NEW
difference fails the fingerprint check and brings the next verify forward (at most every 10 min).

HTTP (loopback by default; --listen 0.0.0.0:9109 inside a container or pod). --listen binds exactly
the address it names (IPv4, [IPv6], or a host name resolved to one address); durations are 0.1s..30d.

\b
  /healthz  200 "ok" when the last fingerprint check passed and the last
            verify (if one has run for this golden) passed; 503 with the
            reason otherwise, and "no check yet" until the first fingerprint
            check finishes (that happens at start-up).
  /livez    200 while the daemon serves (for a liveness probe; /healthz is
            for readiness).
  /status   JSON: last results, current drift, history summary.
  /metrics  Prometheus text format.

History (checks, drift events) is kept in SQLite in --state-dir and survives restarts; a verify from
before a restart is reused while it is fresher than --verify-every and for the same golden.

The golden file is re-read when it changes on disk (replace it atomically); a new golden triggers
a verify. A replacement that cannot be loaded makes /healthz 503 naming it, and the checks go on
against the last good golden. A check that is overdue (the loop wedged) makes /healthz 503 too.

One JSON log line per check on stderr. SIGTERM/SIGINT: kill a running verify, exit 0; a daemon
still not stopped 15 s after the signal is forced out (a "stop_forced" log line, exit 3).

\b
Exit codes:
  0  stopped by SIGTERM/SIGINT (or --once and healthy)
  1  --once and not healthy
  2  bad flags, unreadable/invalid golden or unusable state dir (before the
     port is bound)
  3  the listen address is in use or cannot be bound, or the stop had to be
     forced
"""


@app.command(help=WATCH_HELP, no_args_is_help=False)
def watch(
    golden: GoldenOption = None,
    listen: Annotated[
        str,
        typer.Option(envvar="ENVLOCK_LISTEN", show_envvar=True, metavar="HOST:PORT",
                     help="HOST:PORT to serve HTTP on (port 0: any free port; 0.0.0.0:9109 in a container)."),
    ] = "127.0.0.1:9109",
    fingerprint_every: Annotated[str, typer.Option(metavar="DURATION",
                                                   help="Interval of the cheap fingerprint check.")] = "60s",
    verify_every: Annotated[str, typer.Option(metavar="DURATION",
                                              help="Interval of the full verify check (0 disables it).")] = "6h",
    verify_timeout: Annotated[str, typer.Option(metavar="DURATION",
                                                help="Kill a verify child running longer than this.")] = "15m",
    state_dir: Annotated[
        str | None,
        typer.Option(
            envvar="ENVLOCK_STATE_DIR", show_envvar=True, metavar="DIR",
            help="Where the history database lives (default: /var/lib/envlock as root, else "
            "$XDG_STATE_HOME/envlock or ~/.local/state/envlock).",
        ),
    ] = None,
    nfd_features_file: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Write Node Feature Discovery labels here after every check, e.g. "
                     "/etc/kubernetes/node-feature-discovery/features.d/envlock."),
    ] = None,
    verify_command: Annotated[
        str | None,
        typer.Option(metavar="COMMAND",
                     help="Command to run as the verify check instead of `python -m envlock verify GOLDEN --json`; "
                          "split like a shell would (no shell runs it), {golden} is replaced by the golden's path. "
                          "It must print a VerifyReport JSON object and exit 0 (reproduces) or 1 (drift)."),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run each check once (no HTTP), print one line per check and the health, "
                                      "then exit 0 if healthy, 1 if not.")
    ] = False,
    trusted_key: TrustedKeyOption = None,
    cores_every: Annotated[str, typer.Option(metavar="DURATION",
                                             help="Interval of the per-CPU cores check (0, the default, disables "
                                                  "it).")] = "0",
    cores_timeout: Annotated[str, typer.Option(metavar="DURATION",
                                               help="Kill a cores child running longer than this.")] = "1h",
    cores_command: Annotated[
        str | None,
        typer.Option(metavar="COMMAND",
                     help="Command to run as the cores check instead of `python -m envlock cores --json` (e.g. with "
                          "--cpus or --jobs); split like a shell would. It must print a cores JSON report and exit 0 "
                          "(all CPUs agree) or 1 (not)."),
    ] = None,
) -> None:
    # First thing: the environment the user started the daemon with. What runs from here on
    # (importing threadpoolctl sets KMP_DUPLICATE_LIB_OK) may write to os.environ; the checks must not see that.
    environ = dict(os.environ)
    code = _watch(
        environ=environ, golden=golden, listen=listen, fingerprint_every=fingerprint_every, verify_every=verify_every,
        verify_timeout=verify_timeout, state_dir=state_dir, nfd_features_file=nfd_features_file,
        verify_command=verify_command, once=once, trusted_key=trusted_key or [],
        cores=(cores_every, cores_timeout, cores_command),
    )
    raise typer.Exit(code)


def _watch(*, environ: dict[str, str], golden: Path | None, listen: str, fingerprint_every: str, verify_every: str,
           verify_timeout: str, state_dir: str | None, nfd_features_file: str | None, verify_command: str | None,
           once: bool, trusted_key: list[Path] | None = None,
           cores: tuple[str, str, str | None] = ("0", "1h", None)) -> int:
    golden_path = resolve_golden_path(golden, environ=environ)
    check_outputs([nfd_features_file], inputs=[golden_path, *(trusted_key or [])], need_directory=False)
    listen_address = parse_listen(listen)
    config = WatchConfig(
        golden_path=golden_path,
        # Parsed even with --once (which serves no HTTP): a malformed option is exit 2 either way.
        listen=None if once else listen_address,
        fingerprint_every=parse_duration(fingerprint_every, option="--fingerprint-every"),
        verify_every=parse_duration(verify_every, option="--verify-every", allow_zero=True),
        verify_timeout=parse_duration(verify_timeout, option="--verify-timeout"),
        state_dir=Path(state_dir) if state_dir else default_state_dir(),
        environ=environ,
        nfd_features_file=Path(nfd_features_file) if nfd_features_file else None,
        verify_command=verify_argv(golden_path, verify_command, trusted_key or []),
        once=once,
        trusted_keys=tuple(load_trusted_keys(trusted_key or [])),
        cores_every=parse_duration(cores[0], option="--cores-every", allow_zero=True),
        cores_timeout=parse_duration(cores[1], option="--cores-timeout"),
        cores_command=cores_argv(cores[2]),
    )
    outcome = loop.run_watch(config)
    if once:
        typer.echo(render_once(outcome.healthy, outcome.reason, outcome.fingerprint, outcome.verify, outcome.cores))
    return outcome.exit_code
