"""Prometheus' promqltest conformance scripts, one pytest case per ``eval`` (id = file:line).

The scripts live outside the repo (``../shared/promql-tests`` from the repo root in
CI). Cases we deliberately do not support are listed in ``XFAIL`` with a reason;
native histogram cases are skipped. Run this file as a script to print the
per-file table that tests/promql/RESULTS.md records.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from promql_script import EvalCase, Script, parse_script, run_case

from metricsflow.promql import Engine

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = (REPO_ROOT / ".." / "shared" / "promql-tests").resolve()

_NH_SERIES = (
    "expects a result derived from a native histogram sample (count_values label, group, "
    "histogram comparison); native histograms are out of scope"
)

# Cases we do not support, each with the reason (file:line -> reason).
XFAIL: dict[str, str] = {
    "aggregators.test:447": _NH_SERIES,
    "aggregators.test:453": _NH_SERIES,
    "aggregators.test:459": _NH_SERIES,
    "aggregators.test:467": _NH_SERIES,
    "aggregators.test:474": _NH_SERIES,
    "aggregators.test:573": _NH_SERIES,
    "operators.test:568": _NH_SERIES,
    "operators.test:592": _NH_SERIES,
    "aggregators.test:481": "promql-parser decodes the Go escape \\xc5 to U+00C5, a valid UTF-8 label name, "
    "so the invalid-label-name error Prometheus gives cannot occur",
}


@functools.cache
def _scripts() -> list[Script]:
    if not SCRIPTS_DIR.is_dir():
        return []
    return [parse_script(p) for p in sorted(SCRIPTS_DIR.glob("*.test"))]


@functools.cache
def _engine(script_name: str, epoch: int) -> Engine:
    script = next(s for s in _scripts() if s.name == script_name)
    return Engine(script.source(epoch))


def _params() -> list[object]:
    out: list[object] = []
    for script in _scripts():
        for case in script.cases:
            marks = []
            if case.native_histogram:
                marks.append(pytest.mark.skip(reason="native histogram case"))
            elif case.id in XFAIL:
                marks.append(pytest.mark.xfail(reason=XFAIL[case.id], strict=True))
            out.append(pytest.param(case, id=case.id, marks=marks))
    if not out:
        out.append(
            pytest.param(
                None,
                id="no-scripts",
                marks=pytest.mark.skip(reason=f"promql test scripts not found at {SCRIPTS_DIR}"),
            )
        )
    return out


@pytest.mark.parametrize("case", _params())
def test_promql_script(case: EvalCase) -> None:
    run_case(case, _engine(case.file, case.epoch))


def _report() -> None:
    rows = []
    for script in _scripts():
        counts = {"pass": 0, "fail": 0, "xfail": 0, "skip": 0}
        for case in script.cases:
            if case.native_histogram:
                counts["skip"] += 1
                continue
            try:
                run_case(case, _engine(case.file, case.epoch))
                ok = True
            except AssertionError as exc:
                ok = False
                if case.id not in XFAIL:
                    print(f"FAIL {case.id} {case.query}: {exc}")
            counts["xfail" if case.id in XFAIL and not ok else "pass" if ok else "fail"] += 1
        rows.append((script.name, counts))
    print("| file | pass | xfail | skipped (native histograms) | fail |")
    print("| --- | --- | --- | --- | --- |")
    for name, c in rows:
        print(f"| {name} | {c['pass']} | {c['xfail']} | {c['skip']} | {c['fail']} |")


if __name__ == "__main__":
    _report()
