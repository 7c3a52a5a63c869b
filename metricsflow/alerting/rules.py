"""Prometheus rule files: load, validate like ``promtool check rules``, report file:line.

The YAML is composed into a node tree first (not loaded straight to dicts) so every
refusal names the line of the offending field. Unlike Prometheus, which refuses the
whole file, a bad rule costs only itself: :func:`load_rule_text` returns the groups it
could load together with one :class:`RuleFileError` per problem.

Names follow Prometheus' legacy (pre-UTF-8) validation: metric names
``[a-zA-Z_:][a-zA-Z0-9_:]*``, label names ``[a-zA-Z_][a-zA-Z0-9_]*``, because our
storage, PromQL parser and Alertmanager 0.25 all assume it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import promql_parser
import yaml

from . import templates
from .durations import format_duration_ms, parse_duration_ms

__all__ = [
    "DEFAULT_EVALUATION_INTERVAL_MS",
    "AlertingRule",
    "Group",
    "RecordingRule",
    "Rule",
    "RuleFileError",
    "RuleLoadResult",
    "format_duration_ms",
    "is_valid_label_name",
    "is_valid_metric_name",
    "load_rule_file",
    "load_rule_files",
    "load_rule_text",
    "parse_duration_ms",
]

DEFAULT_EVALUATION_INTERVAL_MS = 60_000  # Prometheus' global evaluation_interval default

_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

_GROUP_FIELDS = frozenset({"name", "interval", "query_offset", "limit", "rules", "labels"})
_RULE_FIELDS = frozenset({"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"})


def is_valid_metric_name(name: str) -> bool:
    return bool(_METRIC_NAME_RE.fullmatch(name))


def is_valid_label_name(name: str) -> bool:
    return bool(_LABEL_NAME_RE.fullmatch(name))


@dataclass(frozen=True, slots=True)
class AlertingRule:
    """One ``alert:`` rule. ``labels``/``annotations`` hold unexpanded templates."""

    name: str
    expr: str
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    line: int = 0

    @property
    def kind(self) -> str:
        return "alerting"


@dataclass(frozen=True, slots=True)
class RecordingRule:
    """One ``record:`` rule; its output series are named ``name`` with ``labels`` set."""

    name: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)
    line: int = 0

    @property
    def kind(self) -> str:
        return "recording"


Rule = AlertingRule | RecordingRule


@dataclass(frozen=True, slots=True)
class Group:
    """A rule group: evaluated together, in order, every ``interval_ms``."""

    name: str
    file: str
    interval_ms: int
    rules: tuple[Rule, ...]
    limit: int = 0
    query_offset_ms: int = 0
    labels: dict[str, str] = field(default_factory=dict)  # Prometheus 3: added to every rule's labels
    line: int = 0

    @property
    def key(self) -> str:
        """Prometheus' group key: ``file;name``."""
        return f"{self.file};{self.name}"

    def rule_key(self, index: int) -> str:
        """Stable key of one rule's state (the changelog key).

        ``group key / rule name / 12 hex digits of sha256(kind, expr, for, labels)``:
        stable across reordering of rules and across restarts, distinct for the common
        pattern of one alert name with several severities; a rule whose expression or
        labels change starts with fresh state, as a new rule does in Prometheus.
        """
        rule = self.rules[index]
        h = hashlib.sha256()
        h.update(rule.kind.encode())
        h.update(b"\0" + rule.expr.encode())
        if isinstance(rule, AlertingRule):
            h.update(b"\0%d\0%d" % (rule.for_ms, rule.keep_firing_for_ms))
        for k in sorted(rule.labels):
            h.update(b"\0" + k.encode() + b"=" + rule.labels[k].encode())
        return f"{self.key}/{rule.name}/{h.hexdigest()[:12]}"


@dataclass(frozen=True, slots=True)
class RuleFileError:
    """Why a rule (or group, or file) was refused, with its position (1-based line/column)."""

    file: str
    line: int
    column: int
    reason: str
    group: str | None = None
    rule_index: int | None = None  # 1-based, as promtool counts
    rule_name: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        if self.group is None:
            return f"{where}: {self.reason}"
        if self.rule_index is None:
            return f'{where}: group "{self.group}": {self.reason}'
        return f'{where}: group "{self.group}", rule {self.rule_index}, "{self.rule_name or ""}": {self.reason}'


@dataclass(frozen=True, slots=True)
class RuleLoadResult:
    groups: tuple[Group, ...]
    errors: tuple[RuleFileError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


class _Refused(Exception):
    def __init__(self, node: yaml.Node | None, reason: str) -> None:
        super().__init__(reason)
        self.node = node
        self.reason = reason


def _pos(node: yaml.Node | None, fallback: yaml.Node | None = None) -> tuple[int, int]:
    n = node if node is not None else fallback
    if n is None:
        return 1, 1
    return n.start_mark.line + 1, n.start_mark.column + 1


def _mapping(node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """Keys of a mapping node → (key node, value node); duplicate or non-string keys refused."""
    if not isinstance(node, yaml.MappingNode):
        raise _Refused(node, f"{what} must be a mapping, got {_kind(node)}")
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise _Refused(k, f"{what} keys must be strings")
        if k.value in out:
            raise _Refused(k, f'mapping key "{k.value}" already defined at line {out[k.value][0].start_mark.line + 1}')
        out[k.value] = (k, v)
    return out


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"scalar {node.value!r}"


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _string(node: yaml.Node, what: str) -> str:
    if _is_null(node):
        return ""
    if not isinstance(node, yaml.ScalarNode):
        raise _Refused(node, f"{what} must be a string, got {_kind(node)}")
    return str(node.value)


def _duration(node: yaml.Node, what: str) -> int:
    text = _string(node, what)
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise _Refused(node, f"{what}: {exc}") from None


def _str_map(node: yaml.Node, what: str) -> tuple[dict[str, str], dict[str, yaml.Node]]:
    if _is_null(node):
        return {}, {}
    items = _mapping(node, what)
    out: dict[str, str] = {}
    nodes: dict[str, yaml.Node] = {}
    for name, (knode, vnode) in items.items():
        if not isinstance(vnode, yaml.ScalarNode):
            raise _Refused(vnode, f"{what} value of {name!r} must be a string, got {_kind(vnode)}")
        out[name] = "" if _is_null(vnode) else str(vnode.value)
        nodes[name] = knode
    return out, nodes


def _int(node: yaml.Node, what: str) -> int:
    if not isinstance(node, yaml.ScalarNode) or not re.fullmatch(r"[+-]?\d+", node.value):
        raise _Refused(node, f"{what} must be an integer, got {_kind(node)}")
    return int(node.value)


def load_rule_text(
    text: str, file: str = "<string>", default_interval_ms: int = DEFAULT_EVALUATION_INTERVAL_MS
) -> RuleLoadResult:
    """Parse and validate one rule file's text; never raises for bad input."""
    errors: list[RuleFileError] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc)
        return RuleLoadResult((), (RuleFileError(file, line, col, f"yaml: {problem}"),))
    if root is None:
        return RuleLoadResult((), ())  # an empty file is a valid file with no groups
    try:
        top = _mapping(root, "rule file")
        for name, (knode, _) in top.items():
            if name != "groups":
                raise _Refused(knode, f"field {name} not found in type rulefmt.RuleGroups")
        if "groups" not in top or _is_null(top["groups"][1]):
            return RuleLoadResult((), ())
        groups_node = top["groups"][1]
        if not isinstance(groups_node, yaml.SequenceNode):
            raise _Refused(groups_node, f"groups must be a list, got {_kind(groups_node)}")
    except _Refused as exc:
        line, col = _pos(exc.node, root)
        return RuleLoadResult((), (RuleFileError(file, line, col, exc.reason),))

    groups: list[Group] = []
    seen: dict[str, int] = {}
    for gnode in groups_node.value:
        group = _load_group(gnode, file, default_interval_ms, seen, errors)
        if group is not None:
            groups.append(group)
    return RuleLoadResult(tuple(groups), tuple(errors))


def _load_group(
    gnode: yaml.Node, file: str, default_interval_ms: int, seen: dict[str, int], errors: list[RuleFileError]
) -> Group | None:
    gname: str | None = None
    try:
        fields = _mapping(gnode, "group")
        if "name" in fields:
            gname = _string(fields["name"][1], "name")
        for name, (knode, _) in fields.items():
            if name not in _GROUP_FIELDS:
                raise _Refused(knode, f"field {name} not found in type rulefmt.RuleGroup")
        if not gname:
            raise _Refused(fields["name"][1] if "name" in fields else gnode, "Groupname must not be empty")
        if gname in seen:
            raise _Refused(fields["name"][1], f'groupname: "{gname}" is repeated in the same file')
        seen[gname] = gnode.start_mark.line + 1
        interval_ms = default_interval_ms
        if "interval" in fields:
            interval_ms = _duration(fields["interval"][1], "interval")
            if interval_ms == 0:
                interval_ms = default_interval_ms  # Prometheus: 0 means the global default
        query_offset_ms = _duration(fields["query_offset"][1], "query_offset") if "query_offset" in fields else 0
        limit = _int(fields["limit"][1], "limit") if "limit" in fields else 0
        if limit < 0:
            raise _Refused(fields["limit"][1], f"limit must not be negative, got {limit}")
        glabels: dict[str, str] = {}
        if "labels" in fields:
            glabels, lnodes = _str_map(fields["labels"][1], "labels")
            for k in glabels:
                if not is_valid_label_name(k) or k == "__name__":
                    raise _Refused(lnodes[k], f"invalid label name: {k}")
        rules_node = fields["rules"][1] if "rules" in fields else None
        if rules_node is not None and not _is_null(rules_node) and not isinstance(rules_node, yaml.SequenceNode):
            raise _Refused(rules_node, f"rules must be a list, got {_kind(rules_node)}")
    except _Refused as exc:
        line, col = _pos(exc.node, gnode)
        errors.append(RuleFileError(file, line, col, exc.reason, group=gname or ""))
        return None

    rules: list[Rule] = []
    for i, rnode in enumerate(rules_node.value if isinstance(rules_node, yaml.SequenceNode) else []):
        rule, rule_errors = _load_rule(rnode, file, gname, i + 1, glabels)
        errors.extend(rule_errors)
        if rule is not None:
            rules.append(rule)
    return Group(
        name=gname,
        file=file,
        interval_ms=interval_ms,
        rules=tuple(rules),
        limit=limit,
        query_offset_ms=query_offset_ms,
        labels=glabels,
        line=gnode.start_mark.line + 1,
    )


def _load_rule(
    rnode: yaml.Node, file: str, group: str, index: int, group_labels: dict[str, str]
) -> tuple[Rule | None, list[RuleFileError]]:
    """One rule, or None with every reason it was refused (promtool lists all, so do we)."""
    problems: list[tuple[yaml.Node | None, str]] = []
    rule_name = ""
    try:
        fields = _mapping(rnode, "rule")
    except _Refused as exc:
        line, col = _pos(exc.node, rnode)
        return None, [RuleFileError(file, line, col, exc.reason, group, index, "")]

    def get_str(key: str) -> str:
        if key not in fields:
            return ""
        try:
            return _string(fields[key][1], key)
        except _Refused as exc:
            problems.append((exc.node, exc.reason))
            return ""

    def node(key: str) -> yaml.Node | None:
        return fields[key][1] if key in fields else None

    def key_node(key: str) -> yaml.Node | None:
        return fields[key][0] if key in fields else None

    for key, (knode, _) in fields.items():
        if key not in _RULE_FIELDS:
            problems.append((knode, f"field {key} not found in type rulefmt.Rule"))

    record, alert, expr = get_str("record"), get_str("alert"), get_str("expr")
    rule_name = alert or record
    if record and alert:
        problems.append((node("record"), "only one of 'record' and 'alert' must be set"))
    if not record and not alert:
        problems.append((rnode, "one of 'record' or 'alert' must be set"))
    if not expr:
        problems.append((node("expr") or rnode, "field 'expr' must be set in rule"))
    else:
        try:
            promql_parser.parse(expr)
        except Exception as exc:  # the Rust parser raises ValueError with its message
            problems.append((node("expr"), f"could not parse expression: {exc}"))

    for_ms = keep_ms = 0
    for key in ("for", "keep_firing_for"):
        if key in fields:
            try:
                value = _duration(fields[key][1], key)
            except _Refused as exc:
                problems.append((exc.node, exc.reason))
                continue
            if key == "for":
                for_ms = value
            else:
                keep_ms = value

    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    label_nodes: dict[str, yaml.Node] = {}
    ann_nodes: dict[str, yaml.Node] = {}
    for key in ("labels", "annotations"):
        if key in fields:
            try:
                values, nodes = _str_map(fields[key][1], key)
            except _Refused as exc:
                problems.append((exc.node, exc.reason))
                continue
            if key == "labels":
                labels, label_nodes = values, nodes
            else:
                annotations, ann_nodes = values, nodes

    if record:
        if annotations:
            problems.append((key_node("annotations"), "invalid field 'annotations' in recording rule"))
        if for_ms:
            problems.append((key_node("for"), "invalid field 'for' in recording rule"))
        if keep_ms:
            problems.append((key_node("keep_firing_for"), "invalid field 'keep_firing_for' in recording rule"))
        if not is_valid_metric_name(record):
            problems.append((node("record"), f"invalid recording rule name: {record}"))
    for k, v in labels.items():
        if not is_valid_label_name(k) or k == "__name__":
            problems.append((label_nodes[k], f"invalid label name: {k}"))
        if "\ufffd" in v:
            problems.append((label_nodes[k], f"invalid label value: {v}"))
    for k in annotations:
        if not is_valid_label_name(k):
            problems.append((ann_nodes[k], f"invalid annotation name: {k}"))
    if alert:
        for kind, values, nodes in (("label", labels, label_nodes), ("annotation", annotations, ann_nodes)):
            for k, v in values.items():
                err = templates.parse_check(v, alert)
                if err is not None:
                    problems.append((nodes[k], f'{kind} "{k}": {err}'))

    if problems:
        errs = []
        for n, reason in problems:
            line, col = _pos(n, rnode)
            errs.append(RuleFileError(file, line, col, reason, group, index, rule_name))
        errs.sort(key=lambda e: (e.line, e.column))
        return None, errs
    merged = {**group_labels, **labels}
    line = rnode.start_mark.line + 1
    if alert:
        return AlertingRule(alert, expr, for_ms, keep_ms, merged, annotations, line), []
    return RecordingRule(record, expr, merged, line), []


def load_rule_file(path: str | Path, default_interval_ms: int = DEFAULT_EVALUATION_INTERVAL_MS) -> RuleLoadResult:
    """Read and validate one file; an unreadable file is one error, not an exception."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return RuleLoadResult((), (RuleFileError(str(path), 1, 1, f"cannot read rule file: {exc}"),))
    return load_rule_text(text, str(path), default_interval_ms)


def load_rule_files(
    paths: Iterable[str | Path], default_interval_ms: int = DEFAULT_EVALUATION_INTERVAL_MS
) -> RuleLoadResult:
    """Several files (e.g. a glob's matches) into one result, groups in file order."""
    groups: list[Group] = []
    errors: list[RuleFileError] = []
    for p in paths:
        res = load_rule_file(p, default_interval_ms)
        groups.extend(res.groups)
        errors.extend(res.errors)
    return RuleLoadResult(tuple(groups), tuple(errors))

