"""Summarise a py-spy collapsed-stack profile (``--format raw``): the functions with the most samples."""

from __future__ import annotations

import sys
from collections import Counter


def top(path: str, limit: int = 25) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            samples = int(count)
            total += samples
            frames = stack.split(";")
            own[frames[-1]] += samples
            for frame in set(frames):
                inclusive[frame] += samples
    out = [f"{total} samples", "-- self --"]
    out += [f"{100 * n / total:5.1f}%  {name}" for name, n in own.most_common(limit)]
    out += ["-- inclusive --"]
    out += [f"{100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(limit)]
    return "\n".join(out)


if __name__ == "__main__":
    print(top(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25))
