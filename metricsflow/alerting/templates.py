"""Go text/template expansion for alert labels and annotations, as Prometheus does it.

Prometheus prefixes every template with four variable definitions and runs it with
``missingkey=zero``; a template that does not parse or fails while running yields
``<error expanding template: ...>`` instead of the text (never an exception), so a bug
in one annotation never stops an alert. This module follows that contract.

Supported: text and ``{{ }}`` actions with ``{{-``/``-}}`` trimming and comments;
pipelines; variables (``$``, ``$labels``, ``$value``, ``$externalLabels``,
``$externalURL``, ``$x := ...``); field chains on dot and variables (``.Labels.job``);
``if``/``else if``/``else``, ``with``, ``range`` (maps iterate in key order); string,
raw-string, number, bool and nil literals; parenthesised pipelines. Functions are in
:mod:`.template_funcs`. Not supported: ``define``/``template``/``block``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .gofmt import go_print, go_type_name
from .template_funcs import FuncError, QueryFunc, make_funcs, truth

__all__ = [
    "TemplateData",
    "TemplateError",
    "expand",
    "expand_or_error",
    "parse_check",
]

# What Prometheus prepends to every alert template (rules/alerting.go).
_DEFS = (
    "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}"
    "{{$externalURL := .ExternalURL}}{{$value := .Value}}"
)


class TemplateError(Exception):
    """A template failed to parse or to execute; ``str()`` is Go's error text."""


@dataclass(frozen=True, slots=True)
class TemplateData:
    """The ``.`` of an alert template (Prometheus' ``AlertTemplateData``)."""

    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0
    external_labels: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""


class _Struct:
    """A Go struct: unknown fields are an execution error, unlike map keys."""

    __slots__ = ("fields", "type_name")

    def __init__(self, fields: dict[str, Any], type_name: str) -> None:
        self.fields = fields
        self.type_name = type_name


# ---------------------------------------------------------------- lexing and parsing


@dataclass(slots=True)
class _Tok:
    kind: str  # ident var field str num bool nil ( ) | := = , dot
    text: str
    pos: int
    value: Any = None


@dataclass(slots=True)
class _Operand:
    kind: str  # ident var field dot lit pipe
    pos: int
    name: str = ""
    chain: tuple[str, ...] = ()
    value: Any = None
    pipe: _Pipeline | None = None
    src: str = ""


@dataclass(slots=True)
class _Command:
    pos: int
    args: list[_Operand]
    src: str


@dataclass(slots=True)
class _Pipeline:
    pos: int
    decl: list[str]
    cmds: list[_Command]
    assign: bool = False  # "=" instead of ":="


@dataclass(slots=True)
class _Text:
    text: str


@dataclass(slots=True)
class _Action:
    pipe: _Pipeline


@dataclass(slots=True)
class _Control:
    kind: str  # if with range
    pipe: _Pipeline
    body: list[Any]
    else_body: list[Any] | None


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUM_RE = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|(\d[\d_]*)?\.?\d*([eE][+-]?\d+)?)")


class _Parser:
    def __init__(self, name: str, text: str, funcs: Mapping[str, Any]) -> None:
        self.name = name
        self.text = text
        self.funcs = funcs
        self.vars: list[list[str]] = [["$"]]

    def fail(self, pos: int, msg: str) -> TemplateError:
        line = 1 + self.text.count("\n", 0, pos)
        return TemplateError(f"template: {self.name}:{line}: {msg}")

    # ---- split into text and actions
    def parse(self) -> list[Any]:
        items = self._split()
        self._items = items
        self._i = 0
        body, end = self._parse_list(top=True)
        if end is not None:
            raise self.fail(end[1], f"unexpected {{{{{end[0]}}}}}")
        return body

    def _split(self) -> list[tuple[str, Any, int]]:
        out: list[tuple[str, Any, int]] = []
        text, i, n = self.text, 0, len(self.text)
        pending_trim = False
        while i < n:
            j = text.find("{{", i)
            chunk = text[i:] if j < 0 else text[i:j]
            if pending_trim:
                chunk = chunk.lstrip(" \t\r\n")
            if j < 0:
                if chunk:
                    out.append(("text", chunk, i))
                break
            inner_start = j + 2
            if text.startswith("- ", inner_start) or text.startswith("-\t", inner_start) or (
                text.startswith("-\n", inner_start)
            ):
                chunk = chunk.rstrip(" \t\r\n")
                inner_start += 1
            if chunk:
                out.append(("text", chunk, i))
            k = inner_start
            # find the closing delimiter outside quotes
            quote = ""
            while k < n:
                c = text[k]
                if quote:
                    if c == "\\" and quote == '"':
                        k += 2
                        continue
                    if c == quote:
                        quote = ""
                elif c in "\"`'":
                    quote = c
                elif text.startswith("}}", k):
                    break
                elif text.startswith("/*", k):
                    e = text.find("*/", k + 2)
                    if e < 0:
                        raise self.fail(k, "unclosed comment")
                    k = e + 2
                    continue
                k += 1
            if k >= n:
                raise self.fail(j, "unclosed action")
            inner_end = k
            pending_trim = False
            if inner_end - 1 >= inner_start and text[inner_end - 1] == "-" and text[inner_end - 2 : inner_end - 1] in (
                " ",
                "\t",
                "\n",
            ):
                inner_end -= 1
                pending_trim = True
            inner = text[inner_start:inner_end]
            if not inner.strip().startswith("/*"):
                out.append(("action", inner, inner_start))
            i = k + 2
        return out

    def _parse_list(self, top: bool) -> tuple[list[Any], tuple[str, int, list[_Tok]] | None]:
        body: list[Any] = []
        while self._i < len(self._items):
            kind, content, pos = self._items[self._i]
            self._i += 1
            if kind == "text":
                body.append(_Text(content))
                continue
            toks = self._lex(content, pos)
            if not toks:
                raise self.fail(pos, "missing value for command")
            head = toks[0]
            if head.kind == "ident" and head.text in ("end", "else"):
                if top:
                    raise self.fail(pos, f"unexpected {{{{{head.text}}}}}")
                return body, (head.text, pos, toks[1:])
            if head.kind == "ident" and head.text in ("if", "with", "range"):
                body.append(self._parse_control(head.text, toks[1:], pos))
                continue
            if head.kind == "ident" and head.text in ("define", "template", "block", "break", "continue"):
                raise self.fail(pos, f"unsupported action {head.text!r} in alert templates")
            body.append(_Action(self._parse_pipeline(toks, pos, allow_decl=True)))
        if not top:
            raise self.fail(len(self.text), "unexpected EOF")
        return body, None

    def _parse_control(self, kind: str, toks: list[_Tok], pos: int) -> _Control:
        self.vars.append([])
        pipe = self._parse_pipeline(toks, pos, allow_decl=True, in_range=kind == "range")
        body, end = self._parse_list(top=False)
        else_body: list[Any] | None = None
        assert end is not None
        if end[0] == "else":
            rest = end[2]
            if rest and rest[0].kind == "ident" and rest[0].text in ("if", "with") and kind != "range":
                # {{else if x}} is sugar for {{else}}{{if x}}...{{end}}{{end}}
                nested = self._parse_control(rest[0].text, rest[1:], end[1])
                else_body = [nested]
                self.vars.pop()
                return _Control(kind, pipe, body, else_body)
            self.vars[-1] = []
            else_body, end2 = self._parse_list(top=False)
            assert end2 is not None
            if end2[0] != "end":
                raise self.fail(end2[1], "expected end; found {{else}}")
        self.vars.pop()
        return _Control(kind, pipe, body, else_body)

    def _lex(self, s: str, base: int) -> list[_Tok]:
        toks: list[_Tok] = []
        i, n = 0, len(s)
        while i < n:
            c = s[i]
            p = base + i
            if c in " \t\r\n":
                i += 1
            elif c in "()|,":
                toks.append(_Tok(c, c, p))
                i += 1
            elif s.startswith(":=", i):
                toks.append(_Tok(":=", ":=", p))
                i += 2
            elif c == "=":
                toks.append(_Tok("=", "=", p))
                i += 1
            elif c == '"':
                j = i + 1
                buf: list[str] = []
                while j < n and s[j] != '"':
                    if s[j] == "\\" and j + 1 < n:
                        esc = s[j + 1]
                        buf.append({"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}.get(esc, "\\" + esc))
                        j += 2
                    else:
                        buf.append(s[j])
                        j += 1
                if j >= n:
                    raise self.fail(p, "unterminated quoted string")
                toks.append(_Tok("str", s[i : j + 1], p, "".join(buf)))
                i = j + 1
            elif c == "`":
                j = s.find("`", i + 1)
                if j < 0:
                    raise self.fail(p, "unterminated raw quoted string")
                toks.append(_Tok("str", s[i : j + 1], p, s[i + 1 : j]))
                i = j + 1
            elif c == "$":
                m = _IDENT_RE.match(s, i + 1)
                name = "$" + (m.group(0) if m else "")
                j = m.end() if m else i + 1
                chain, j = self._chain(s, j)
                toks.append(_Tok("var", s[i:j], p, (name, chain)))
                i = j
            elif c == ".":
                if i + 1 < n and _IDENT_RE.match(s, i + 1):
                    chain, j = self._chain(s, i)
                    toks.append(_Tok("field", s[i:j], p, chain))
                    i = j
                else:
                    toks.append(_Tok("dot", ".", p))
                    i += 1
            elif c.isdigit() or (c in "+-." and i + 1 < n and s[i + 1].isdigit()):
                m = _NUM_RE.match(s, i)
                assert m is not None
                lit = m.group(0)
                try:
                    val: Any = int(lit, 0) if re.fullmatch(r"[+-]?(0[xX][0-9a-fA-F_]+|\d[\d_]*)", lit) else float(lit)
                except ValueError:
                    raise self.fail(p, f"bad number syntax: {lit!r}") from None
                toks.append(_Tok("num", lit, p, val))
                i = m.end()
            elif _IDENT_RE.match(s, i):
                m = _IDENT_RE.match(s, i)
                assert m is not None
                word = m.group(0)
                if word in ("true", "false"):
                    toks.append(_Tok("bool", word, p, word == "true"))
                elif word == "nil":
                    toks.append(_Tok("nil", word, p, None))
                else:
                    toks.append(_Tok("ident", word, p))
                i = m.end()
            elif c == "'":
                j = s.find("'", i + 1)
                if j < 0:
                    raise self.fail(p, "unterminated character constant")
                toks.append(_Tok("num", s[i : j + 1], p, ord(s[i + 1 : j][:1] or "\0")))
                i = j + 1
            else:
                raise self.fail(p, f"unexpected {c!r} in command")
        return toks

    @staticmethod
    def _chain(s: str, j: int) -> tuple[tuple[str, ...], int]:
        chain: list[str] = []
        while j < len(s) and s[j] == ".":
            m = _IDENT_RE.match(s, j + 1)
            if not m:
                break
            chain.append(m.group(0))
            j = m.end()
        return tuple(chain), j

    def _declared(self, name: str) -> bool:
        return any(name in scope for scope in self.vars)

    def _parse_pipeline(self, toks: list[_Tok], pos: int, allow_decl: bool, in_range: bool = False) -> _Pipeline:
        decl: list[str] = []
        assign = False
        # Declarations: $x := ... or $k, $v := ... (range only)
        if allow_decl and toks and toks[0].kind == "var" and not toks[0].value[1]:
            if len(toks) > 1 and toks[1].kind in (":=", "="):
                decl = [toks[0].value[0]]
                assign = toks[1].kind == "="
                toks = toks[2:]
            elif in_range and len(toks) > 3 and toks[1].kind == "," and toks[2].kind == "var" and toks[3].kind == ":=":
                decl = [toks[0].value[0], toks[2].value[0]]
                toks = toks[4:]
        if assign and not self._declared(decl[0]):
            raise self.fail(pos, f'undefined variable "{decl[0]}"')
        cmds, rest = self._parse_cmds(toks, pos)
        if rest:
            raise self.fail(rest[0].pos, f"unexpected {rest[0].text!r} in operand")
        if not cmds:
            raise self.fail(pos, "missing value for command")
        if not assign:
            self.vars[-1].extend(decl)
        return _Pipeline(pos, decl, cmds, assign)

    def _parse_cmds(self, toks: list[_Tok], pos: int) -> tuple[list[_Command], list[_Tok]]:
        cmds: list[_Command] = []
        i = 0
        while True:
            args: list[_Operand] = []
            start = toks[i].pos if i < len(toks) else pos
            while i < len(toks) and toks[i].kind not in ("|", ")"):
                op, i = self._operand(toks, i)
                args.append(op)
            if not args:
                raise self.fail(start, "missing value for command")
            cmds.append(_Command(args[0].pos, args, " ".join(a.src for a in args)))
            if i < len(toks) and toks[i].kind == "|":
                i += 1
                continue
            return cmds, toks[i:]

    def _operand(self, toks: list[_Tok], i: int) -> tuple[_Operand, int]:
        t = toks[i]
        if t.kind == "ident":
            if t.text not in self.funcs:
                raise self.fail(t.pos, f'function "{t.text}" not defined')
            return _Operand("ident", t.pos, name=t.text, src=t.text), i + 1
        if t.kind == "var":
            name, chain = t.value
            if not self._declared(name):
                raise self.fail(t.pos, f'undefined variable "{name}"')
            return _Operand("var", t.pos, name=name, chain=chain, src=t.text), i + 1
        if t.kind == "field":
            return _Operand("field", t.pos, chain=t.value, src=t.text), i + 1
        if t.kind == "dot":
            return _Operand("dot", t.pos, src="."), i + 1
        if t.kind in ("str", "num", "bool", "nil"):
            return _Operand("lit", t.pos, value=t.value, src=t.text), i + 1
        if t.kind == "(":
            # find the matching ")"
            depth, j = 0, i
            while j < len(toks):
                if toks[j].kind == "(":
                    depth += 1
                elif toks[j].kind == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if j >= len(toks):
                raise self.fail(t.pos, "unclosed left paren")
            inner = self._parse_pipeline(toks[i + 1 : j], t.pos, allow_decl=False)
            src = "(" + " | ".join(c.src for c in inner.cmds) + ")"
            chain: tuple[str, ...] = ()
            k = j + 1
            if k < len(toks) and toks[k].kind == "field" and toks[k].pos == toks[j].pos + 1:
                chain = toks[k].value
                src += toks[k].text
                k += 1
            return _Operand("pipe", t.pos, pipe=inner, chain=chain, src=src), k
        raise self.fail(t.pos, f"unexpected {t.text!r} in operand")


# ---------------------------------------------------------------- execution


class _ExecError(Exception):
    def __init__(self, pos: int, context: str, msg: str) -> None:
        super().__init__(msg)
        self.pos = pos
        self.context = context
        self.msg = msg



class _Exec:
    def __init__(self, name: str, text: str, funcs: Mapping[str, Any]) -> None:
        self.name = name
        self.text = text
        self.funcs = funcs
        self.out: list[str] = []
        self.scopes: list[dict[str, Any]] = []

    def error(self, pos: int, context: str, msg: str) -> TemplateError:
        before = self.text[:pos]
        line = 1 + before.count("\n")
        col = pos - (before.rfind("\n") + 1) if "\n" in before else pos
        return TemplateError(f'template: {self.name}:{line}:{col}: executing "{self.name}" at <{context}>: {msg}')

    def lookup_var(self, name: str) -> Any:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def set_var(self, name: str, value: Any, assign: bool) -> None:
        if assign:
            for scope in reversed(self.scopes):
                if name in scope:
                    scope[name] = value
                    return
        self.scopes[-1][name] = value

    def run(self, nodes: list[Any], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                v = self.pipeline(node.pipe, dot)
                if not node.pipe.decl:
                    self.out.append(go_print(v))
            else:
                self.control(node, dot)

    def control(self, node: _Control, dot: Any) -> None:
        self.scopes.append({})
        try:
            if node.kind == "range":
                val = self.eval_pipeline_raw(node.pipe, dot)
                items: list[tuple[Any, Any]]
                if isinstance(val, Mapping):
                    items = [(k, val[k]) for k in sorted(val)]
                elif isinstance(val, list | tuple):
                    items = list(enumerate(val))
                elif isinstance(val, int) and not isinstance(val, bool):
                    items = [(i, i) for i in range(val)]
                elif val is None:
                    items = []
                else:
                    raise _ExecError(node.pipe.pos, "range", f"range can't iterate over {go_print(val)}")
                if not items:
                    if node.else_body is not None:
                        self.run(node.else_body, dot)
                    return
                for k, v in items:
                    if len(node.pipe.decl) == 1:
                        self.scopes[-1][node.pipe.decl[0]] = v
                    elif len(node.pipe.decl) == 2:
                        self.scopes[-1][node.pipe.decl[0]] = k
                        self.scopes[-1][node.pipe.decl[1]] = v
                    self.run(node.body, v)
                return
            val = self.pipeline(node.pipe, dot)
            if truth(val):
                self.run(node.body, val if node.kind == "with" else dot)
            elif node.else_body is not None:
                self.run(node.else_body, dot)
        finally:
            self.scopes.pop()

    def eval_pipeline_raw(self, pipe: _Pipeline, dot: Any) -> Any:
        # range declarations bind per element, not the whole value
        return self.pipeline(_Pipeline(pipe.pos, [], pipe.cmds), dot)

    def pipeline(self, pipe: _Pipeline, dot: Any) -> Any:
        value: Any = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value)
        for name in pipe.decl:
            self.set_var(name, value, pipe.assign)
        return value

    def command(self, cmd: _Command, dot: Any, final: Any) -> Any:
        first = cmd.args[0]
        if first.kind == "ident":
            return self.call(first.name, cmd, dot, final)
        if len(cmd.args) > 1 or final is not _NO_FINAL:
            raise _ExecError(cmd.pos, cmd.src, f"can't give argument to non-function {first.src}")
        return self.operand(first, dot)

    def operand(self, op: _Operand, dot: Any) -> Any:
        if op.kind == "lit":
            return op.value
        if op.kind == "dot":
            return dot
        if op.kind == "var":
            base = self.lookup_var(op.name)
            return self.fields(base, op.chain, op)
        if op.kind == "field":
            return self.fields(dot, op.chain, op)
        if op.kind == "pipe":
            assert op.pipe is not None
            return self.fields(self.pipeline(op.pipe, dot), op.chain, op)
        if op.kind == "ident":
            return self.call(op.name, _Command(op.pos, [op], op.src), dot, _NO_FINAL)
        raise AssertionError(op.kind)

    def fields(self, base: Any, chain: tuple[str, ...], op: _Operand) -> Any:
        for name in chain:
            if isinstance(base, _Struct):
                if name not in base.fields:
                    raise _ExecError(op.pos, op.src, f"can't evaluate field {name} in type {base.type_name}")
                base = base.fields[name]
            elif isinstance(base, Mapping):
                base = base.get(name, "")  # missingkey=zero on map[string]string
            elif base is None:
                raise _ExecError(op.pos, op.src, f"nil pointer evaluating interface {{}}.{name}")
            else:
                raise _ExecError(op.pos, op.src, f"can't evaluate field {name} in type {go_type_name(base)}")
        return base

    def call(self, name: str, cmd: _Command, dot: Any, final: Any) -> Any:
        fn = self.funcs[name]
        args = [self.operand(a, dot) for a in cmd.args[1:]] if name not in ("and", "or") else None
        if name in ("and", "or"):
            # Go evaluates and/or lazily since 1.18.
            ops = cmd.args[1:]
            if not ops and final is _NO_FINAL:
                raise _ExecError(cmd.pos, cmd.src, f"wrong number of args for {name}: want at least 1 got 0")
            result: Any = None
            values = list(ops) + ([final] if final is not _NO_FINAL else [])
            for item in values:
                result = self.operand(item, dot) if isinstance(item, _Operand) else item
                if (name == "and") != truth(result):
                    return result
            return result
        assert args is not None
        if final is not _NO_FINAL:
            args.append(final)
        try:
            return fn(*args)
        except FuncError as exc:
            raise _ExecError(cmd.pos, cmd.src, f"error calling {name}: {exc}") from None
        except TypeError:
            raise _ExecError(cmd.pos, cmd.src, f"wrong number of args for {name}: got {len(args)}") from None


_NO_FINAL = object()


# ---------------------------------------------------------------- functions


_PARSE_FUNCS = make_funcs(None, 0, "")
_STRUCT_TYPE = (
    "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }"
)


def _template_name(alert_name: str) -> str:
    return "__alert_" + alert_name


@functools.lru_cache(maxsize=4096)
def _parse_cached(name: str, full_text: str) -> list[Any]:
    """Parsed templates are reused across samples and evaluations (the tree is never mutated)."""
    return _Parser(name, full_text, _PARSE_FUNCS).parse()


def parse_check(text: str, alert_name: str) -> str | None:
    """Go's parse error for the template (as ``promtool check rules`` reports it), or None."""
    try:
        _Parser(_template_name(alert_name), _DEFS + text, _PARSE_FUNCS).parse()
    except TemplateError as exc:
        return str(exc)
    return None


def expand(
    text: str,
    alert_name: str,
    data: TemplateData,
    *,
    query: QueryFunc | None = None,
    time_ms: int = 0,
) -> str:
    """Expand one alert template; raises TemplateError with Go's message on failure."""
    if "{{" not in text:
        return text  # the common case: plain text needs no parse
    name = _template_name(alert_name)
    full = _DEFS + text
    funcs = make_funcs(query, time_ms, data.external_url)
    nodes = _parse_cached(name, full)
    root = _Struct(
        {
            "Labels": dict(data.labels),
            "ExternalLabels": dict(data.external_labels),
            "ExternalURL": data.external_url,
            "Value": data.value,
        },
        _STRUCT_TYPE,
    )
    ex = _Exec(name, full, funcs)
    ex.scopes.append({"$": root})
    try:
        ex.run(nodes, root)
    except _ExecError as exc:
        raise ex.error(exc.pos, exc.context, exc.msg) from None
    except RecursionError:
        raise TemplateError(f"template: {name}: exceeded maximum template depth") from None
    return "".join(ex.out)


def expand_or_error(
    text: str,
    alert_name: str,
    data: TemplateData,
    *,
    query: QueryFunc | None = None,
    time_ms: int = 0,
) -> str:
    """Expand, or return ``<error expanding template: ...>`` exactly as Prometheus does; never raises."""
    try:
        return expand(text, alert_name, data, query=query, time_ms=time_ms)
    except TemplateError as exc:
        name = _template_name(alert_name)
        msg = str(exc)
        kind = "error executing template" if "executing" in msg else "error parsing template"
        return f"<error expanding template: {kind} {name}: {msg}>"
    except Exception as exc:  # a bug here must never cost the alert; Prometheus recovers panics too
        return f"<error expanding template: panic expanding template {_template_name(alert_name)}: {exc}>"

