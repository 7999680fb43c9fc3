"""oneDNN on or off as the golden effectively had it (``tensorflow.onednn_enabled``)."""

from __future__ import annotations

from collections.abc import Sequence

from envlock.explain.families.base import Candidate, Family, Proposal, Sides


class Onednn(Family):
    kind = "onednn"

    def propose(self, sides: Sides, earlier: Sequence[Candidate]) -> Proposal:
        wanted, now = sides.golden.tensorflow.onednn_enabled, sides.here.tensorflow.onednn_enabled
        if wanted is None or now is None or wanted == now:
            return Proposal()
        value = "1" if wanted else "0"
        if f"TF_ENABLE_ONEDNN_OPTS={value}" in {c.id for c in earlier}:
            return Proposal()  # the environment candidate already sets exactly this
        return Proposal([Candidate(f"TF_ENABLE_ONEDNN_OPTS={value}", "onednn",
                                   f"oneDNN optimisations were {'on' if wanted else 'off'} in the golden, "
                                   f"{'on' if now else 'off'} here", env={"TF_ENABLE_ONEDNN_OPTS": value},
                                   paths=("tensorflow.onednn_enabled",))])


FAMILY = Onednn()
