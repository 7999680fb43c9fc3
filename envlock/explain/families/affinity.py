"""CPU affinity matched: the one lever that is not an environment variable.

The child pins itself to the CPUs before TF and numpy load (``ChildRequest.affinity``), which also
matches the thread counts TF and OpenBLAS derive from it. Everything explain knows about affinity
is here: the candidate, how a child gets it, and how a person reproduces it (``taskset``).
"""

from __future__ import annotations

from collections.abc import Sequence

from envlock.explain.families.base import Candidate, Family, Launch, Proposal, Sides


class Affinity(Family):
    kind = "affinity"
    setting = "affinity"

    def propose(self, sides: Sides, earlier: Sequence[Candidate]) -> Proposal:
        wanted, now = sides.golden.cpu.affinity, sides.here.cpu.affinity
        online = sides.here.cpu.logical_cores
        if not wanted or now is None or sorted(wanted) == sorted(now):
            return Proposal()
        if online is None or len(wanted) > online:
            return Proposal(not_applicable=[f"cpu.affinity: the golden ran on {len(wanted)} CPUs, "
                                            f"this machine has {online}"])
        cpus = tuple(sorted(wanted)) if max(wanted) < online else tuple(range(len(wanted)))
        return Proposal([Candidate("affinity=" + ",".join(map(str, cpus)), "affinity",
                                   f"the golden's process could run on {len(wanted)} CPU(s), this one on "
                                   f"{len(now)}: TF's and OpenBLAS's thread pools follow the affinity",
                                   settings={"affinity": cpus}, paths=("cpu.affinity",))])

    def apply(self, candidate: Candidate, launch: Launch) -> Launch:
        launch = super().apply(candidate, launch)
        cpus = candidate.settings.get("affinity")
        if not cpus:
            return launch
        return Launch(env=launch.env, options={**launch.options, "affinity": list(cpus)})

    def shell_hint(self, value: Sequence[int]) -> str:
        return "taskset -c " + ",".join(map(str, value))

    def env_file_line(self, value: Sequence[int]) -> str:
        return f"# and run pinned to these CPUs: {self.shell_hint(value)} ..."


FAMILY = Affinity()
