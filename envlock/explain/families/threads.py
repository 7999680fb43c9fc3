"""OpenBLAS's thread count as the golden had it."""

from __future__ import annotations

from collections.abc import Sequence

from envlock.explain.families.base import Candidate, Family, Proposal, Sides


class Threads(Family):
    kind = "threads"

    def propose(self, sides: Sides, earlier: Sequence[Candidate]) -> Proposal:
        golden_blas = [b.num_threads for b in sides.golden.numeric.blas if b.internal_api == "openblas"]
        here_blas = [b.num_threads for b in sides.here.numeric.blas if b.internal_api == "openblas"]
        if not (golden_blas and here_blas and golden_blas[0] is not None and golden_blas[0] != here_blas[0]):
            return Proposal()
        return Proposal([Candidate(f"OPENBLAS_NUM_THREADS={golden_blas[0]}", "threads",
                                   f"OpenBLAS used {golden_blas[0]} thread(s) in the golden, {here_blas[0]} here",
                                   env={"OPENBLAS_NUM_THREADS": str(golden_blas[0])}, paths=("numeric.blas",))])


FAMILY = Threads()
