"""Proof on one machine that a portable golden would travel: the portable profile's run of a hardware-bound
probe, judged against IEEE-754.

A probe explain found hardware-bound (no configuration restores the golden's bits, the CPU's arithmetic
differs) is run once more under the portable profile (envlock.profiles). For the probes with a closed-form
IEEE reference (envlock.probes.ieee) the outputs are compared with it: IEEE-exact here means every
conforming CPU gives the same bits under the profile, so a golden recorded with `capture --golden
--portable` would reproduce on the other vendor. Pure: the child's run comes in, a sentence goes out.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from envlock.probes.ieee import check_run
from envlock.profiles import Profile
from envlock.results import ProbeRun

PortableStatus = Literal["ieee-exact", "vendor-specific", "covered", "not covered", "not run"]


class PortableCheck(BaseModel):
    status: PortableStatus
    detail: str


def portable_check(probe: str, seed: int, run: ProbeRun | None, profile: Profile) -> PortableCheck:
    """What the profile's run of ``probe`` here says about its portability."""
    flag = "--portable"
    if run is None or run.status != "ok":
        reason = (run.reason if run is not None else None) or "not run within the budget"
        return PortableCheck(status="not run", detail=f"not checked under {flag}: {reason}")
    check = check_run(probe, seed, list(run.outputs))
    if check is not None:
        if check.ieee_exact:
            return PortableCheck(status="ieee-exact", detail=(
                f"portable under {flag} (IEEE-exact here: {', '.join(check.exact)} equal their IEEE-754 "
                f"references, which every conforming CPU gives): record with `envlock capture --golden {flag}`"))
        return PortableCheck(status="vendor-specific", detail=(
            f"stays vendor-specific under {flag}: {', '.join(check.inexact)} differ from the IEEE-754 reference "
            "here (an approximation the instruction set leaves to the vendor)"))
    covered = profile.covers(probe)
    if covered:
        return PortableCheck(status="covered", detail=(
            f"portable under {flag} as measured on both recorded vendors ({profile.label}, docs/portable.md); "
            "no closed-form IEEE reference to check it against here"))
    why = profile.not_covered.get(probe, "not measured under the profile")
    return PortableCheck(status="not covered", detail=f"not covered by {flag}: {why}")
