"""Summarise py-spy raw (folded) stacks: top frames by self and by inclusive samples.

    python -m perf.lib.folded perf/flamegraphs/<name>.folded.txt.gz [--top 25]
"""

from __future__ import annotations

import argparse
import gzip
import re
from collections import Counter

_LINE = re.compile(r" \(([^)]*)\)$")


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py:123)"; drop the line number for grouping
    m = re.match(r"(.*) \((.*?):(\d+)\)$", frame)
    if not m:
        return frame
    name, path, _line = m.groups()
    parts = path.split("/")
    tail = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({tail})"


def summarise(path: str, top: int = 25) -> str:
    self_c: Counter = Counter()
    incl: Counter = Counter()
    total = 0
    idle = 0
    opener = gzip.open if path.endswith(".gz") else open
    for line in opener(path, "rt"):
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, n = line.rpartition(" ")
        try:
            n = int(n)
        except ValueError:
            continue
        frames = [_short(f) for f in stack.split(";")]
        total += n
        if frames and frames[-1].startswith(("select (selectors.py", "poll (", "_run_once", "epoll")):
            idle += n
        self_c[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"samples: {total} (idle in selector: {idle}, {idle / max(1, total):.0%})", "", "top self:"]
    out += [f"  {c / total:6.1%}  {f}" for f, c in self_c.most_common(top)]
    out += ["", "top inclusive:"]
    out += [f"  {c / total:6.1%}  {f}" for f, c in incl.most_common(top * 2)]
    return "\n".join(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    print(summarise(a.path, a.top))
