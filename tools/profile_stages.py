"""Where a pipeline run spends its time: the ten most expensive calls of each stage, from a py-spy profile.

Record a whole run (every stage's papermill kernel is a subprocess of its stage; ``--nonblocking`` samples without
pausing the processes, 10 samples a second keep py-spy's own cost small), with make's own lanes (LANES=1: one stage
at a time; py-spy once lost track of the two-lane recipe, whose stages then ran on unprofiled):

    py-spy record --subprocesses --nonblocking -r 10 -f raw -o build/profile.raw -- make repro LANES=1
    python tools/profile_stages.py build/profile.raw            # a Markdown table per stage

A stage is recognised by its command (``python -m advhash.pipeline run 03_cmla``) among a sample's ancestor
processes. A call is a function of the library (``advhash/...``). Each is listed with two shares of the stage's
samples: **own**, the samples whose innermost library frame it is (torch's work inside it included; the own shares
of a stage add up to at most 100 %), and **inclusive**, those with it anywhere on the stack (a caller and its
callees both count); the table is sorted by own share. py-spy's raw format is one line per distinct stack, ``frame;frame;... count``, each frame
``function (file:line)``; the line number is dropped so that a function counts once per stack. No library reads
this format, hence this small script.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

STAGE = re.compile(r"advhash\.pipeline run (\d\d_\w+)")
FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^():]+)(?::\d+)?\)$")


def stage_profiles(lines) -> dict[str, tuple[int, collections.Counter, collections.Counter]]:
    """{stage: (samples, inclusive, own)} of py-spy raw lines: Counters of "function (file)" -> samples with it on
    the stack (inclusive) and samples whose innermost library frame it is (own)."""
    profiles: dict[str, tuple[int, collections.Counter, collections.Counter]] = {}
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stage = STAGE.search(stack)
        if stage is None:
            continue
        total, calls, own = profiles.get(stage.group(1), (0, collections.Counter(), collections.Counter()))
        seen, innermost = set(), None
        for frame in stack.split(";"):
            match = FRAME.match(frame)
            if match is None or frame.startswith("process ") or match["function"] == "<module>":
                continue                                       # processes, and whole cells or imports
            where = match["file"]
            if "advhash/" not in where:
                continue
            name = f"{match['function']} ({where.split('lib/')[-1]})"
            innermost = name
            if name not in seen:
                seen.add(name)
                calls[name] += int(count)
        if innermost is not None:
            own[innermost] += int(count)
        profiles[stage.group(1)] = (total + int(count), calls, own)
    return profiles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="py-spy's raw output (-f raw)")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10, help="py-spy's samples per second (-r)")
    args = parser.parse_args(argv)
    with args.raw.open(encoding="utf-8", errors="replace") as lines:
        profiles = stage_profiles(lines)
    if not profiles:
        print(f"{args.raw}: no sample under an `advhash.pipeline run` stage", file=sys.stderr)
        return 1
    for stage, (total, calls, own) in sorted(profiles.items()):
        print(f"\n### {stage}: {total} samples, about {total / args.rate / 60:.1f} min of one core\n")
        print("| own | inclusive | call |\n|---:|---:|---|")
        for name, count in own.most_common(args.top):
            print(f"| {count / total:.0%} | {calls[name] / total:.0%} | `{name}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
