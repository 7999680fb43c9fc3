"""Each differing determinism variable set to the golden's value (unset where the golden had none)."""

from __future__ import annotations

from collections.abc import Sequence

from envlock.environ import is_allowed
from envlock.explain.families.base import Candidate, Family, Proposal, Sides

# Set by explain's own children (verbose output only): never a difference worth a candidate.
IGNORED_VARIABLES = frozenset({"ONEDNN_VERBOSE", "DNNL_VERBOSE"})


class Environment(Family):
    kind = "environment"

    def propose(self, sides: Sides, earlier: Sequence[Candidate]) -> Proposal:
        golden_env, here_env = sides.golden_env, sides.here_env
        changes: dict[str, str | None] = {n: None for n in here_env if is_allowed(n) and n not in golden_env}
        changes.update({n: v for n, v in golden_env.items() if here_env.get(n) != v})
        out = []
        for name, value in sorted(changes.items()):
            if name in IGNORED_VARIABLES:
                continue
            label = f"unset {name}" if value is None else f"{name}={value}"
            out.append(Candidate(label, "environment", f"the golden ran with {label.replace('unset ', 'no ')}",
                                 env={name: value}, paths=(f"environment.{name}",)))
        return Proposal(out)


FAMILY = Environment()
