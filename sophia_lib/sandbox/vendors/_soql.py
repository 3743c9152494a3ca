"""A small SQL-ish query parser for the Salesforce (SOQL) and NetSuite (SuiteQL) simulators.

Both vendors take a query *language*, not query parameters, so the simulators must understand the
subset connectors send: a select list, one object, a ``WHERE`` of comparisons joined by AND/OR/NOT,
``ORDER BY`` and (SOQL) ``LIMIT``/``OFFSET``. The grammar differs in a few places, chosen by
``dialect``:

* SOQL: datetime and date literals are **unquoted** (``SystemModstamp > 2024-01-15T10:22:33Z``),
  strings escape with a backslash, ``FIELDS(ALL)`` and ``COUNT()`` may be selected, dotted names are
  relationship paths (``Account.Name``), no ``*`` and no aliases.
* SuiteQL (Oracle flavour): ``*``, ``expr AS alias``, functions (``TO_DATE``, ``TO_CHAR``, ``UPPER``,
  ``LOWER``), ``IS [NOT] NULL``, ``BETWEEN``, strings escape a quote by doubling it, dotted names are
  ``alias.column``.

Evaluation (:func:`mask`, :func:`sort_index`) is vectorised over a pandas frame of typed columns: the
vendor module resolves a column to a Series and converts literals to the column's type, so a filter over
100k rows costs milliseconds. Every problem raises :class:`QueryError` with the character position, which
the vendor turns into its own error envelope.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Dialect = Literal["soql", "suiteql"]


class QueryError(Exception):
    """A query the vendor rejects. ``kind``: malformed | field | object | type (literal/field mismatch)."""

    def __init__(self, kind: str, message: str, pos: int = 0, name: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.pos = pos
        self.name = name


@dataclass(frozen=True)
class Token:
    kind: str  # ident | string | number | datetime | date | op | punct | star | eof
    value: str
    pos: int


_DATETIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})"
_TOKEN_RE = {
    "soql": re.compile(
        rf"(?P<ws>\s+)|(?P<datetime>{_DATETIME})|(?P<date>\d{{4}}-\d{{2}}-\d{{2}}(?![\dT]))"
        r"|(?P<number>[+-]?\d+(?:\.\d+)?(?![\w-]))|(?P<string>'(?:\\.|[^'\\])*')"
        r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
        r"|(?P<op><=|>=|!=|<>|=|<|>)|(?P<punct>[(),])"
    ),
    "suiteql": re.compile(
        r"(?P<ws>\s+)|(?P<number>\d+(?:\.\d+)?(?![\w]))|(?P<string>'(?:''|[^'])*')"
        r"|(?P<ident>[A-Za-z_][A-Za-z0-9_$#]*(?:\.[A-Za-z_][A-Za-z0-9_$#]*)*)"
        r"|(?P<op><=|>=|!=|<>|=|<|>)|(?P<punct>[(),])|(?P<star>\*)"
    ),
}


def tokenize(text: str, dialect: Dialect) -> list[Token]:
    pattern = _TOKEN_RE[dialect]
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = pattern.match(text, pos)
        if m is None:
            raise QueryError("malformed", f"unexpected token: '{text[pos:pos + 10].split()[0]}'", pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            value = m.group()
            if kind == "string":
                body = value[1:-1]
                value = (re.sub(r"\\(.)", lambda g: {"n": "\n", "t": "\t"}.get(g.group(1), g.group(1)), body)
                         if dialect == "soql" else body.replace("''", "'"))
            tokens.append(Token(kind, value, pos))
        pos = m.end()
    tokens.append(Token("eof", "", len(text)))
    return tokens


# --- AST ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Col:
    name: str
    pos: int


@dataclass(frozen=True)
class Lit:
    value: Any
    kind: str  # string | number | bool | null | datetime | date
    pos: int


@dataclass(frozen=True)
class Func:
    name: str  # upper-case
    args: tuple[Any, ...]
    pos: int


@dataclass(frozen=True)
class Cmp:
    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class InList:
    left: Any
    values: tuple[Lit, ...]
    negate: bool


@dataclass(frozen=True)
class Like:
    left: Any
    pattern: Lit
    negate: bool


@dataclass(frozen=True)
class IsNull:
    left: Any
    negate: bool


@dataclass(frozen=True)
class Between:
    left: Any
    low: Any
    high: Any


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    part: Any


@dataclass
class SelectItem:
    expr: Any  # Col | Func | "*"
    alias: str | None = None


@dataclass
class OrderItem:
    expr: Any
    desc: bool = False
    nulls_first: bool | None = None


@dataclass
class Query:
    select: list[SelectItem]
    source: str
    source_pos: int
    alias: str | None = None
    where: Any = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    count_only: bool = False
    fields_fn: str | None = None  # SOQL FIELDS(ALL|STANDARD|CUSTOM)


_CLAUSE_WORDS = {"FROM", "WHERE", "ORDER", "LIMIT", "OFFSET", "GROUP", "HAVING", "WITH", "FOR", "UPDATE", "USING"}


class _Parser:
    def __init__(self, text: str, dialect: Dialect) -> None:
        self.text = text
        self.dialect = dialect
        self.tokens = tokenize(text, dialect)
        self.i = 0

    # token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return t

    def is_kw(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.value.upper() in words

    def expect_kw(self, word: str) -> Token:
        if not self.is_kw(word):
            self.fail(f"expecting '{word}'")
        return self.advance()

    def expect_punct(self, value: str) -> Token:
        if not (self.tok.kind == "punct" and self.tok.value == value):
            self.fail(f"expecting '{value}'")
        return self.advance()

    def fail(self, why: str) -> None:
        found = self.tok.value if self.tok.kind != "eof" else "<EOF>"
        raise QueryError("malformed", f"unexpected token: '{found}' ({why})", self.tok.pos)

    # grammar
    def query(self) -> Query:
        self.expect_kw("SELECT")
        items, count_only, fields_fn = self.select_list()
        self.expect_kw("FROM")
        if self.tok.kind != "ident":
            self.fail("expecting an object name")
        src = self.advance()
        q = Query(items, src.value, src.pos, count_only=count_only, fields_fn=fields_fn)
        if self.dialect == "suiteql" and self.tok.kind == "ident" and self.tok.value.upper() not in _CLAUSE_WORDS:
            if self.is_kw("AS"):
                self.advance()
            q.alias = self.advance().value
        if self.is_kw("WHERE"):
            self.advance()
            q.where = self.or_expr()
        if self.is_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            q.order_by = [self.order_item()]
            while self.tok.kind == "punct" and self.tok.value == ",":
                self.advance()
                q.order_by.append(self.order_item())
        if self.dialect == "soql":
            for word in ("LIMIT", "OFFSET"):
                if self.is_kw(word):
                    self.advance()
                    if self.tok.kind != "number" or not self.tok.value.isdigit():
                        self.fail(f"{word} needs a non-negative integer")
                    setattr(q, word.lower(), int(self.advance().value))
        if self.tok.kind != "eof":
            self.fail("expecting end of query")
        return q

    def select_list(self) -> tuple[list[SelectItem], bool, str | None]:
        if self.dialect == "soql" and self.is_kw("COUNT") and self.tokens[self.i + 1].value == "(" \
                and self.tokens[self.i + 2].value == ")":
            self.i += 3
            return [], True, None
        if self.dialect == "soql" and self.is_kw("FIELDS") and self.tokens[self.i + 1].value == "(":
            self.i += 2
            if not (self.tok.kind == "ident" and self.tok.value.upper() in ("ALL", "STANDARD", "CUSTOM")):
                self.fail("FIELDS takes ALL, STANDARD or CUSTOM")
            which = self.advance().value.upper()
            self.expect_punct(")")
            return [], False, which
        items = [self.select_item()]
        while self.tok.kind == "punct" and self.tok.value == ",":
            self.advance()
            items.append(self.select_item())
        return items, False, None

    def select_item(self) -> SelectItem:
        if self.tok.kind == "star" and self.dialect == "suiteql":
            self.advance()
            return SelectItem("*")
        if self.tok.kind != "ident" or self.tok.value.upper() in _CLAUSE_WORDS:
            self.fail("expecting a field name")
        expr = self.operand()
        alias = None
        if self.dialect == "suiteql":
            if self.is_kw("AS"):
                self.advance()
                if self.tok.kind != "ident":
                    self.fail("expecting an alias")
                alias = self.advance().value
            elif self.tok.kind == "ident" and self.tok.value.upper() not in _CLAUSE_WORDS:
                alias = self.advance().value
        return SelectItem(expr, alias)

    def order_item(self) -> OrderItem:
        item = OrderItem(self.operand())
        if self.is_kw("ASC", "DESC"):
            item.desc = self.advance().value.upper() == "DESC"
        if self.is_kw("NULLS"):
            self.advance()
            if not self.is_kw("FIRST", "LAST"):
                self.fail("expecting FIRST or LAST")
            item.nulls_first = self.advance().value.upper() == "FIRST"
        return item

    def or_expr(self) -> Any:
        parts = [self.and_expr()]
        while self.is_kw("OR"):
            self.advance()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else BoolOp("OR", tuple(parts))

    def and_expr(self) -> Any:
        parts = [self.not_expr()]
        while self.is_kw("AND"):
            self.advance()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else BoolOp("AND", tuple(parts))

    def not_expr(self) -> Any:
        if self.is_kw("NOT"):
            self.advance()
            return Not(self.not_expr())
        if self.tok.kind == "punct" and self.tok.value == "(":
            self.advance()
            inner = self.or_expr()
            self.expect_punct(")")
            return inner
        return self.condition()

    def condition(self) -> Any:
        left = self.operand()
        if self.is_kw("IS") and self.dialect == "suiteql":
            self.advance()
            negate = False
            if self.is_kw("NOT"):
                self.advance()
                negate = True
            self.expect_kw("NULL")
            return IsNull(left, negate)
        negate = False
        if self.is_kw("NOT"):
            self.advance()
            negate = True
            if not self.is_kw("IN", "LIKE"):
                self.fail("expecting IN or LIKE after NOT")
        if self.is_kw("IN"):
            self.advance()
            self.expect_punct("(")
            values = [self.literal()]
            while self.tok.kind == "punct" and self.tok.value == ",":
                self.advance()
                values.append(self.literal())
            self.expect_punct(")")
            return InList(left, tuple(values), negate)
        if self.is_kw("LIKE"):
            self.advance()
            pattern = self.literal()
            if pattern.kind != "string":
                raise QueryError("malformed", "LIKE needs a quoted pattern", pattern.pos)
            return Like(left, pattern, negate)
        if self.is_kw("BETWEEN") and self.dialect == "suiteql":
            self.advance()
            low = self.operand()
            self.expect_kw("AND")
            return Between(left, low, self.operand())
        if self.tok.kind != "op":
            self.fail("expecting a comparison operator")
        op = self.advance().value
        return Cmp("!=" if op == "<>" else op, left, self.operand())

    def operand(self) -> Any:
        t = self.tok
        if t.kind == "ident" and t.value.upper() in ("TRUE", "FALSE", "NULL"):
            return self.literal()
        if t.kind == "ident":
            self.advance()
            if self.tok.kind == "punct" and self.tok.value == "(" and self.dialect == "suiteql":
                self.advance()
                args: list[Any] = []
                if not (self.tok.kind == "punct" and self.tok.value == ")"):
                    args.append(self.operand())
                    while self.tok.kind == "punct" and self.tok.value == ",":
                        self.advance()
                        args.append(self.operand())
                self.expect_punct(")")
                return Func(t.value.upper(), tuple(args), t.pos)
            return Col(t.value, t.pos)
        return self.literal()

    def literal(self) -> Lit:
        t = self.tok
        if t.kind in ("string", "datetime", "date"):
            self.advance()
            return Lit(t.value, t.kind, t.pos)
        if t.kind == "number":
            self.advance()
            return Lit(float(t.value) if "." in t.value else int(t.value), "number", t.pos)
        if t.kind == "ident" and t.value.upper() in ("TRUE", "FALSE"):
            self.advance()
            if self.dialect == "suiteql":
                raise QueryError("malformed", f"invalid identifier {t.value}", t.pos)
            return Lit(t.value.upper() == "TRUE", "bool", t.pos)
        if t.kind == "ident" and t.value.upper() == "NULL":
            self.advance()
            return Lit(None, "null", t.pos)
        self.fail("expecting a value")
        raise AssertionError  # unreachable


def parse(text: str, dialect: Dialect) -> Query:
    """Parse a query; raises :class:`QueryError` (kind ``malformed``) on a syntax error."""
    if not text or not text.strip():
        raise QueryError("malformed", "a query string must be provided", 0)
    return _Parser(text, dialect).query()


def row_col(text: str, pos: int) -> tuple[int, int]:
    """1-based (row, column) of a character position, as vendors report them."""
    before = text[:pos]
    return before.count("\n") + 1, pos - (before.rfind("\n") + 1) + 1


# --- vectorised evaluation ---------------------------------------------------------------------------
Resolve = Callable[[Any], pd.Series]
Coerce = Callable[[Any, Any], Any]  # (literal node, column node) -> python value comparable with the column


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}


def _compare(series: pd.Series, op: str, value: Any, null_ne_true: bool) -> np.ndarray:
    present = series.notna().to_numpy()
    out = np.zeros(len(series), dtype=bool)
    if value is None:  # "= null" / "!= null" (SOQL)
        if op == "=":
            return ~present
        if op == "!=":
            return present
        raise QueryError("malformed", "null can only be compared with = or !=")
    if present.any():
        out[present] = np.asarray(_OPS[op](series[present], value), dtype=bool)
    if op == "!=" and null_ne_true:
        out[~present] = True
    return out


def mask(node: Any, frame: pd.DataFrame, resolve: Resolve, coerce: Coerce, *, null_ne_true: bool = False) -> np.ndarray:
    """Boolean row mask of a WHERE tree. ``null_ne_true``: SOQL's ``!=`` matches nulls, SQL's does not."""
    if node is None:
        return np.ones(len(frame), dtype=bool)
    if isinstance(node, BoolOp):
        parts = [mask(p, frame, resolve, coerce, null_ne_true=null_ne_true) for p in node.parts]
        return np.logical_and.reduce(parts) if node.op == "AND" else np.logical_or.reduce(parts)
    if isinstance(node, Not):
        return ~mask(node.part, frame, resolve, coerce, null_ne_true=null_ne_true)
    if isinstance(node, Cmp):
        left, right, op = node.left, node.right, node.op
        if isinstance(left, Lit) and not isinstance(right, Lit):
            left, right, op = right, left, _FLIP[op]
        if isinstance(right, Lit | Func) and not isinstance(left, Lit):
            return _compare(resolve(left), op, coerce(right, left), null_ne_true)
        if isinstance(left, Col | Func) and isinstance(right, Col | Func):
            a, b = resolve(left), resolve(right)
            both = (a.notna() & b.notna()).to_numpy()
            out = np.zeros(len(frame), dtype=bool)
            out[both] = np.asarray(_OPS[op](a[both], b[both]), dtype=bool)
            return out
        raise QueryError("malformed", "a comparison needs a field", getattr(left, "pos", 0))
    if isinstance(node, InList):
        series = resolve(node.left)
        values = [coerce(v, node.left) for v in node.values]
        hit = series.isin([v for v in values if v is not None]).to_numpy()
        if any(v is None for v in values):
            hit |= series.isna().to_numpy()
        return ~hit if node.negate else hit
    if isinstance(node, Like):
        series = resolve(node.left)
        regex = "^" + "".join(".*" if c == "%" else "." if c == "_" else re.escape(c)
                              for c in str(node.pattern.value)) + "$"
        present = series.notna().to_numpy()
        hit = np.zeros(len(series), dtype=bool)
        hit[present] = series[present].astype(str).str.match(regex, case=False).to_numpy()
        return ~hit if node.negate else hit
    if isinstance(node, IsNull):
        isna = resolve(node.left).isna().to_numpy()
        return ~isna if node.negate else isna
    if isinstance(node, Between):
        series = resolve(node.left)
        return (_compare(series, ">=", coerce(node.low, node.left), False)
                & _compare(series, "<=", coerce(node.high, node.left), False))
    raise QueryError("malformed", "unsupported condition", 0)


def sort_index(frame: pd.DataFrame, order_by: list[OrderItem], resolve: Resolve, *,
               nulls_first_asc: bool) -> np.ndarray:
    """Row positions in ORDER BY order (stable; nulls placed per item or the dialect's default)."""
    positions = np.arange(len(frame))
    for item in reversed(order_by):  # stable sorts from the last key to the first
        series = resolve(item.expr).iloc[positions]
        nulls_first = item.nulls_first if item.nulls_first is not None else (nulls_first_asc != item.desc)
        key = series.reset_index(drop=True)
        order = key.sort_values(ascending=not item.desc, kind="stable",
                                na_position="first" if nulls_first else "last").index.to_numpy()
        positions = positions[order]
    return positions
