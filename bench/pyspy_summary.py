"""Summarise a py-spy raw (collapsed stacks) profile: inclusive and self share per function.

    .venv/bin/py-spy record -p <pid> -d 20 -r 200 -f raw -o profile.raw   # while wrk runs
    .venv/bin/python bench/pyspy_summary.py profile.raw [top]
"""

from __future__ import annotations

import collections
import re
import sys

FRAME = re.compile(r"(.*?) \((.*?)(?::\d+)?\)$")


def main() -> None:
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    with open(sys.argv[1], encoding="utf-8") as fh:
        for line in fh:
            stack, _, count = line.rstrip().rpartition(" ")
            n = int(count)
            total += n
            names = []
            for frame in stack.split(";"):
                m = FRAME.match(frame)
                names.append(f"{m.group(1)} ({m.group(2).split('site-packages/')[-1]})" if m else frame)
            for name in set(names):
                inclusive[name] += n
            own[names[-1]] += n
    print(f"samples: {total} (all threads; idle pool threads show as Condition.wait)")
    for name, n in inclusive.most_common(top):
        print(f"{100 * n / total:5.1f}%  {name}")
    print("--- self")
    for name, n in own.most_common(25):
        print(f"{100 * n / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
