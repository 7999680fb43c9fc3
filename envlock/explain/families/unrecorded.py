"""A cause envlock never records: the variables set here that the golden's environment lacks.

envlock records only numerics variables (``envlock.environ``); when no recorded difference explains a
drift, explain unsets what is set here and absent from the golden, whatever its name, and bisects
it (``envlock.explain.planner.minimal_unset``) down to the variable, or the smallest set, whose
unsetting restores the bits. Its candidates are made during that search, never planned ahead; only
names are ever shown: an unset needs no value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from envlock.environ import SET_BY_IMPORT
from envlock.explain.families.base import Candidate, Family
from envlock.explain.families.environment import IGNORED_VARIABLES
from envlock.redact import needs_redaction

# What a probe child needs to start, find its modules and do I/O: never unset while looking for an
# unrecorded cause. Small on purpose: everything else set here is a suspect, whatever its name.
CHILD_NEEDS: frozenset[str] = frozenset({
    "PATH",                                # libraries run helpers found on it (ldconfig, nvidia-smi)
    "HOME",                                # the user's site-packages and the libraries' caches hang off it
    "TMPDIR", "TMP", "TEMP",               # where the child and its libraries write temporary files
    "PWD",                                 # the shell's idea of the working directory, read by os.getcwd users
    "LANG", "LANGUAGE",                    # (and LC_*): the encoding of the child's text I/O
    # Where the interpreter finds envlock, TensorFlow and the user's probe modules:
    "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "PYTHONPLATLIBDIR",
    "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH",  # where the loader finds libpython and the CUDA libraries
    *IGNORED_VARIABLES,                    # envlock sets them for its own children
    *SET_BY_IMPORT,                        # TensorFlow sets them itself when it loads: unsetting changes nothing
})
CHILD_NEEDS_PREFIXES: tuple[str, ...] = (
    "LC_",       # locale categories, as LANG
    "ENVLOCK_",  # envlock's own settings (the golden to use, the daemon's): the probe child reads none
)


def unrecorded_variables(golden_names: Iterable[str], here_env: Mapping[str, str]) -> tuple[str, ...]:
    """The variables set here that the golden's environment (its manifest's and its lockdown's) does
    not have, whatever their names, less what a probe child needs to run (``CHILD_NEEDS``); sorted."""
    recorded = set(golden_names)
    return tuple(sorted(n for n in here_env if n not in recorded and n not in CHILD_NEEDS
                        and not n.startswith(CHILD_NEEDS_PREFIXES)))


def looks_like_a_credential(name: str) -> bool:
    """redact's credential-name test (``NAME=value`` is redacted when NAME looks like one)."""
    return needs_redaction(f"{name}=x")


def unset_candidate(names: Sequence[str], *, total: int, trial: int) -> Candidate:
    """Unset ``names`` (some of the ``total`` unrecorded variables): names only, never a value.
    ``trial`` numbers the large sets, whose ids would otherwise list dozens of names."""
    names = tuple(sorted(names))
    if len(names) <= 3:
        label = " + ".join(f"unset {n}" for n in names)
    elif len(names) == total:
        label = f"unset all {total} variables not in the golden"
    else:
        label = f"unset {len(names)} of the {total} variables not in the golden (trial {trial})"
    secret = [n for n in names if looks_like_a_credential(n)]
    reason = ("set here and absent from the golden's environment: envlock does not record "
              + ("it" if len(names) == 1 else "them") + " (names only: values are never shown)")
    if secret:
        reason += f"; {', '.join(secret)} look(s) like a credential and is unset like any other"
    return Candidate(label, "unrecorded", reason, env=dict.fromkeys(names),
                     paths=tuple(f"environment.{n}" for n in names),
                     members=tuple(f"unset {n}" for n in names) if len(names) > 1 else ())


class Unrecorded(Family):
    kind = "unrecorded"


FAMILY = Unrecorded()
