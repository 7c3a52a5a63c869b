"""Binary operators: arithmetic, comparisons (with ``bool``) and set operators.

Vector matching follows Prometheus' VectorBinop step by step, but over all steps
at once: every row gets a match signature id, the "one" side is reduced to one
row per (signature, step), and the errors Prometheus raises per step (duplicate
series on the one side, ambiguous many-to-one matches) are raised if they occur
at any step where both sides have samples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import labels as L
from .errors import PromQLExecutionError
from .labels import Labels
from .values import InstantVec, Scalar, merge_same_labels

COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}
SET_OPS = {"and", "or", "unless"}

_ARITH: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "%": np.fmod,  # Go's math.Mod keeps the sign of the dividend, like C fmod
    "^": np.power,
    "atan2": np.arctan2,
}
_CMP: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}


def apply(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op in _ARITH:
            return _ARITH[op](a, b)
        return _CMP[op](a, b)


def scalar_scalar(op: str, a: Scalar, b: Scalar) -> Scalar:
    res = apply(op, a.values, b.values)
    return Scalar(res.astype(np.float64))


def vector_scalar(
    op: str, vec: InstantVec, sc: Scalar, scalar_on_left: bool, return_bool: bool
) -> InstantVec:
    left, right = (sc.values[None, :], vec.values) if scalar_on_left else (vec.values, sc.values[None, :])
    res = apply(op, left, right)
    if op in COMPARISONS:
        if return_bool:
            out = InstantVec(
                [L.drop_name(lb) for lb in vec.labels], res.astype(np.float64), vec.present.copy()
            )
            return merge_same_labels(out)
        # Filtering keeps the vector's own value, whichever side it is on.
        return InstantVec(list(vec.labels), vec.values, vec.present & res, vec.ordered).compact()
    out = InstantVec([L.drop_name(lb) for lb in vec.labels], res, vec.present.copy())
    return merge_same_labels(out)


class Matching:
    """on/ignoring plus group_left/right, as parsed."""

    def __init__(self, card: str, on: bool, names: list[str], include: list[str]) -> None:
        self.card = card  # "one-to-one" | "many-to-one" | "one-to-many" | "many-to-many"
        self.on = on
        self.names = names
        self.include = include

    def signature(self, lb: Labels) -> Labels:
        if self.on:
            return L.keep(lb, self.names)
        return L.without(lb, [*self.names, L.NAME])


def _sig_ids(m: Matching, *sides: list[Labels]) -> tuple[list[np.ndarray], list[Labels]]:
    index: dict[Labels, int] = {}
    sigs: list[Labels] = []
    out = []
    for side in sides:
        ids = np.empty(len(side), dtype=np.intp)
        for i, lb in enumerate(side):
            s = m.signature(lb)
            j = index.get(s)
            if j is None:
                j = index[s] = len(sigs)
                sigs.append(s)
            ids[i] = j
        out.append(ids)
    return out, sigs


def _per_sig_count(ids: np.ndarray, mask: np.ndarray, nsig: int) -> np.ndarray:
    out = np.zeros((nsig, mask.shape[1]), dtype=np.int64)
    if ids.size:
        np.add.at(out, ids, mask.astype(np.int64))
    return out


def set_op(op: str, lhs: InstantVec, rhs: InstantVec, m: Matching) -> InstantVec:
    (ls, rs), sigs = _sig_ids(m, lhs.labels, rhs.labels)
    S = len(sigs)
    if op in ("and", "unless"):
        rpres = _per_sig_count(rs, rhs.present, S) > 0
        hit = rpres[ls] if len(lhs) else np.zeros_like(lhs.present)
        keep = lhs.present & (hit if op == "and" else ~hit)
        return InstantVec(list(lhs.labels), lhs.values, keep, lhs.ordered).compact()
    lpres = _per_sig_count(ls, lhs.present, S) > 0
    rkeep = rhs.present & ~lpres[rs] if len(rhs) else rhs.present
    out = InstantVec(
        list(lhs.labels) + list(rhs.labels),
        np.concatenate([lhs.values, rhs.values]),
        np.concatenate([lhs.present, rkeep]),
    )
    return merge_same_labels(out.compact())


def _dup_error(m: Matching, rows: list[Labels], one_side: str) -> PromQLExecutionError:
    a, b = sorted(L.format_labels(r) for r in rows[:2])
    matched = m.signature(rows[0])
    return PromQLExecutionError(
        f"found duplicate series for the match group {L.format_labels(matched)} on the {one_side} hand-side "
        f"of the operation: [{a}, {b}];many-to-many matching not allowed: "
        "matching labels must be unique on one side"
    )


def vector_vector(op: str, lhs: InstantVec, rhs: InstantVec, m: Matching, return_bool: bool) -> InstantVec:
    T = lhs.values.shape[1]
    swapped = m.card == "one-to-many"
    many, one = (rhs, lhs) if swapped else (lhs, rhs)
    if len(many) == 0 or len(one) == 0:
        return InstantVec.empty(T)
    (ms, os_), sigs = _sig_ids(m, many.labels, one.labels)
    S = len(sigs)
    both = many.present.any(axis=0) & one.present.any(axis=0)
    ocount = _per_sig_count(os_, one.present, S)
    bad = (ocount > 1) & both[None, :]
    if bad.any():
        sig, t = (int(x[0]) for x in np.nonzero(bad))
        rows = [one.labels[i] for i in np.flatnonzero((os_ == sig) & one.present[:, t])]
        raise _dup_error(m, rows, "left" if swapped else "right")
    orow = np.full((S, T), -1, dtype=np.intp)
    rr = np.where(one.present, np.arange(len(one))[:, None], -1)
    np.maximum.at(orow, os_, rr)
    matched = many.present & (orow[ms] >= 0)
    steps = np.arange(T)
    one_row = orow[ms]  # (n, T)
    one_vals = np.where(matched, one.values[np.maximum(one_row, 0), steps[None, :]], np.nan)
    if swapped:
        lv, rv = one_vals, many.values
    else:
        lv, rv = many.values, one_vals
    res = apply(op, lv, rv)
    is_cmp = op in COMPARISONS
    drop_name = return_bool or not is_cmp

    def result_labels(lb: Labels, one_lb: Labels) -> Labels:
        out = L.drop_name(lb) if drop_name else lb
        if m.card == "one-to-one":
            out = L.keep(out, m.names) if m.on else L.without(out, m.names)
        for name in m.include:
            out = L.with_label(out, name, L.get(one_lb, name))
        return out

    out_labels: list[Labels] = []
    out_src: list[tuple[int, np.ndarray]] = []
    if m.card == "one-to-one":
        mcount = _per_sig_count(ms, matched, S)
        if (mcount > 1).any():
            raise PromQLExecutionError(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
            )
        for i, lb in enumerate(many.labels):
            out_labels.append(result_labels(lb, ()))
            out_src.append((i, matched[i]))
    else:
        for i, lb in enumerate(many.labels):
            partners = np.unique(one_row[i][matched[i]])
            for j in partners:
                out_labels.append(result_labels(lb, one.labels[j]))
                out_src.append((i, matched[i] & (one_row[i] == j)))
        # Within one match group, the result label sets must differ at every step.
        seen: dict[tuple[int, Labels], np.ndarray] = {}
        for (i, mask), lb in zip(out_src, out_labels, strict=True):
            key = (int(ms[i]), lb)
            prev = seen.get(key)
            if prev is not None and (prev & mask).any():
                raise PromQLExecutionError(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                )
            seen[key] = mask if prev is None else prev | mask
    if not out_src:
        return InstantVec.empty(T)
    src = np.array([i for i, _ in out_src], dtype=np.intp)
    pres = np.stack([mask for _, mask in out_src])
    vals = res[src]
    if is_cmp:
        if return_bool:
            vals = vals.astype(np.float64)
        else:
            pres = pres & vals.astype(bool)
            vals = lv[src]
    out = InstantVec(out_labels, vals.astype(np.float64), pres)
    return merge_same_labels(out.compact())
