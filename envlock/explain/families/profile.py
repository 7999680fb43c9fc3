"""The portable profile (``envlock.profiles``): tried on the probes found hardware-bound, to tell
whether a golden recorded with ``capture --golden --portable`` would travel. Its candidate is made
after the findings, never planned ahead."""

from __future__ import annotations

from envlock.explain.families.base import Candidate, Family
from envlock.profiles import Profile

PORTABLE_CANDIDATE = "the portable profile"


def portable_candidate(profile: Profile) -> Candidate:
    return Candidate(PORTABLE_CANDIDATE, "profile", f"the {profile.label} profile (docs/portable.md)",
                     env=dict(profile.environment))


class PortableProfile(Family):
    kind = "profile"


FAMILY = PortableProfile()
