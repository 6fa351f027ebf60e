"""MLflow ``search_runs``: the filter / order_by grammar, compiled to parameterized ClickHouse SQL.

Every user-supplied key and value reaches ClickHouse as a bound query parameter (``{p0:String}``);
the SQL text only ever contains identifiers and operators chosen here from fixed tables, plus the
database name, which is validated.

Grammar (MLflow's ``SearchUtils``, parsed by hand instead of with sqlparse)::

    filter      := <empty> | comparison (AND comparison)*          -- AND is case-insensitive
    comparison  := identifier op value
                 | identifier IS [NOT] NULL                         -- params and tags only
                 | identifier [NOT] IN '(' string (',' string)* ')' -- attributes.run_id, datasets.*, tags (trackstream)
    identifier  := [type '.'] key
    type        := metric(s) | param(s) | parameter(s) | tag(s) | attribute(s) | attr | run
                 | dataset(s)                                       -- keys name, digest, context
    key         := "quoted" | `quoted` | bare                       -- no type means attribute

Decisions where MLflow is silent or does something odd:

- An unquoted key runs from the first dot to the next character outside ``[\\w.\\-/:]``, so
  ``metrics.val.loss`` is the metric ``val.loss`` (MLflow splits at the first dot too) and
  ``metrics.a-b/c:d`` works without quotes. Keys with spaces or other characters need quotes.
- Quoted strings unescape ``''`` / ``\\'`` (and ``""`` / ``\\"``, ``\\\\``); MLflow passes them
  through raw, which makes a value containing a quote impossible to match. Other backslash
  sequences are kept as written, so LIKE's ``\\%`` / ``\\_`` escapes work as in ClickHouse.
- Values may be single- or double-quoted, as in MLflow; backticks quote keys only.
- Metric comparisons follow IEEE: a NaN latest value matches only ``!=`` (MLflow's SQL store
  stores NaN as 0 and compares that).
- ``datasets.<name|digest|context> <op> <value>`` matches a run that has *some* dataset input
  satisfying the comparison (MLflow's semantics, so ``!=`` means "has another dataset too");
  ``context`` is the input's ``mlflow.data.context`` tag and an input without one never matches.
  Ordering by datasets is refused, as MLflow does.
- Entity types are case-sensitive (as in MLflow); keywords are not.
- order_by also accepts the ``run name`` aliases (MLflow accepts them only in filters).
- Errors quote the filter and give the 0-based character position of the offending token.

Ordering is MLflow's: the order_by items, then ``start_time DESC`` unless start_time was ordered,
then ``run_id ASC``; a run without the ordered metric / param / tag sorts last either way, and a
NaN metric sorts after numbers but before missing values. Paging is by offset, with MLflow's
token format (base64 of ``{"offset": N}``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from trackstream.consumers.store import check_database_name
from trackstream.errors import InvalidInput

Kind = Literal["metric", "param", "tag", "attribute", "dataset"]
FilterValue = float | str | tuple[str, ...] | None

SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS_THRESHOLD = 50000
RUN_VIEW_TYPES = {"ACTIVE_ONLY": ("active",), "DELETED_ONLY": ("deleted",), "ALL": None}

_ENTITY_TYPES: dict[str, Kind] = {
    "metric": "metric", "metrics": "metric",
    "param": "param", "params": "param", "parameter": "param", "parameters": "param",
    "tag": "tag", "tags": "tag",
    "attribute": "attribute", "attributes": "attribute", "attr": "attribute", "run": "attribute",
}
_DATASET_TYPES = {"dataset", "datasets"}
_DATASET_KEYS = ("name", "digest", "context")
_STRING_ATTRIBUTES = ("run_id", "run_name", "status", "user_id", "artifact_uri")
_NUMERIC_ATTRIBUTES = ("start_time", "end_time")
_ATTRIBUTE_ALIASES = {"created": "start_time", "Created": "start_time",
                      "run name": "run_name", "Run name": "run_name", "Run Name": "run_name"}



@dataclass(frozen=True)
class Vocabulary:
    """The attributes one kind of entity can be searched and ordered by (runs, logged models)."""

    string_attributes: tuple[str, ...]
    numeric_attributes: tuple[str, ...]
    aliases: dict[str, str]
    list_attributes: tuple[str, ...] = ()  # attributes that take IN / NOT IN lists
    dataset_filters: bool = False  # datasets.<name|digest|context> (runs' dataset inputs)
    keyed_kinds: tuple[Kind, ...] = ("metric", "param", "tag")  # the ``<type>.<key>`` entities besides attributes

    @property
    def valid_keys(self) -> list[str]:
        return sorted(self.string_attributes + self.numeric_attributes + tuple(self.aliases))


RUN_VOCABULARY = Vocabulary(_STRING_ATTRIBUTES, _NUMERIC_ATTRIBUTES, _ATTRIBUTE_ALIASES, ("run_id",),
                            dataset_filters=True)

_NUMERIC_COMPARATORS = ("=", "!=", "<", "<=", ">", ">=")
_COMPARATORS: dict[str, tuple[str, ...]] = {
    "metric": _NUMERIC_COMPARATORS,
    "param": ("=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"),
    # IN / NOT IN on tags is trackstream's extension (MLflow refuses it): the UI finds the children of a
    # page of runs with one ``tags.mlflow.parentRunId IN (...)`` search.
    "tag": ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL"),
    "string_attribute": ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"),
    "numeric_attribute": _NUMERIC_COMPARATORS,
    "dataset": ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"),
}
_ENTITY_NAMES = {"metric": "metric", "param": "parameter", "tag": "tag", "attribute": "attributes",
                 "dataset": "dataset attributes"}
_KEYWORDS = {"AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "IS", "NULL"}

_BARE_WORD = re.compile(r"[^\W\d]\w*")
_BARE_KEY = re.compile(r"[\w.\-/:]+")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NUMBER_LIKE = re.compile(r"-?[\w.]+")
_OPERATORS = ("<=", ">=", "!=", "<>", "==", "=", "<", ">")
_SHOWN_FILTER_CHARS = 200
_MAX_PAGE_TOKEN_CHARS = 1000
_MAX_OFFSET = 2**53


@dataclass(frozen=True)
class Comparison:
    """One ``<kind>.<key> <comparator> <value>`` term; ``position`` is where it starts in the filter."""

    kind: Kind
    key: str
    comparator: str
    value: FilterValue
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class OrderTerm:
    kind: Kind
    key: str
    ascending: bool = True


@dataclass(frozen=True)
class _Token:
    kind: str  # ident | string | number | op | keyword | lparen | rparen | comma | end
    text: str
    pos: int
    value: Any = None
    entity: str | None = None  # the type prefix of an identifier, as written
    quote: str | None = None  # the quote of an identifier written as one quoted segment


class _SyntaxError(Exception):
    def __init__(self, pos: int, detail: str) -> None:
        super().__init__(detail)
        self.pos = pos
        self.detail = detail


def _read_quoted(s: str, start: int) -> tuple[str, int]:
    quote, out, i = s[start], [], start + 1
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            nxt = s[i + 1]
            out.append(nxt if nxt in (quote, "\\") else c + nxt)
            i += 2
        elif c == quote:
            if i + 1 < len(s) and s[i + 1] == quote:
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise _SyntaxError(start, f"unterminated quoted text starting with {s[start:start + 20]}")


def _tokenize(s: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
        elif c == ";":
            raise _SyntaxError(i, f"Search filter contained multiple expression '{_shown(s)}'. "
                                  "Provide AND-ed expression list.")
        elif c in "(),":
            tokens.append(_Token({"(": "lparen", ")": "rparen", ",": "comma"}[c], c, i))
            i += 1
        elif c == "'":
            value, end = _read_quoted(s, i)
            tokens.append(_Token("string", s[i:end], i, value))
            i = end
        elif c in "<>=!":
            op = next((o for o in _OPERATORS if s.startswith(o, i)), None)
            if op is None:
                raise _SyntaxError(i, f"unexpected character {c!r}")
            tokens.append(_Token("op", op, i, op))
            i += len(op)
        elif (number := _NUMBER.match(s, i)) is not None:
            end = number.end()
            if end < n and (s[end].isalnum() or s[end] in "._"):
                bad = _NUMBER_LIKE.match(s, i).group()  # type: ignore[union-attr]
                raise _SyntaxError(i, f"invalid number {bad!r}")
            tokens.append(_Token("number", s[i:end], i, float(s[i:end])))
            i = end
        elif c in "\"`" or _BARE_WORD.match(s, i):
            tokens.append(_read_identifier(s, i))
            i = tokens[-1].pos + len(tokens[-1].text)
        else:
            raise _SyntaxError(i, f"unexpected character {c!r}")
    tokens.append(_Token("end", "end of input", n))
    return tokens


def _read_identifier(s: str, start: int) -> _Token:
    if s[start] in "\"`":
        first, i = _read_quoted(s, start)
        quote: str | None = s[start]
    else:
        m = _BARE_WORD.match(s, start)
        assert m is not None
        first, i, quote = m.group(), m.end(), None
    if i < len(s) and s[i] == ".":
        i += 1
        if i < len(s) and s[i] in "\"`":
            key, i = _read_quoted(s, i)
        else:
            m = _BARE_KEY.match(s, i)
            if m is None:
                raise _SyntaxError(i, f"expected a key after {s[start:i]!r}")
            key, i = m.group(), m.end()
        return _Token("ident", s[start:i], start, key, entity=first)
    if quote is None and first.upper() in _KEYWORDS:
        return _Token("keyword", first, start, first.upper())
    return _Token("ident", s[start:i], start, first, quote=quote)


def _resolve(token: _Token, orderable: bool = False, vocab: Vocabulary = RUN_VOCABULARY) -> tuple[Kind, str]:
    """(kind, canonical key) of an identifier token; attribute aliases are translated."""
    key: str = token.value
    if token.entity is None:
        kind: Kind = "attribute"
    elif token.entity in _DATASET_TYPES and vocab.dataset_filters:
        if orderable:
            raise _SyntaxError(token.pos, f"Ordering by datasets ({token.text}) is not supported")
        if key not in _DATASET_KEYS:
            raise _SyntaxError(token.pos, f"Invalid dataset key '{key}' specified. Valid keys are "
                                          f"{list(_DATASET_KEYS)}")
        kind = "dataset"
    elif _ENTITY_TYPES.get(token.entity) in (*vocab.keyed_kinds, "attribute"):
        kind = _ENTITY_TYPES[token.entity]
    else:
        valid = [_ENTITY_NAMES[k] for k in vocab.keyed_kinds] + ["attribute"]
        raise _SyntaxError(token.pos, f"Invalid entity type '{token.entity}'. Valid values are {valid}")
    if key == "":
        raise _SyntaxError(token.pos, f"empty key in {token.text}")
    if kind == "attribute":
        key = vocab.aliases.get(key, key)
        if key not in vocab.string_attributes + vocab.numeric_attributes:
            raise _SyntaxError(token.pos, f"Invalid attribute key '{token.value}' specified. "
                                          f"Valid keys are {vocab.valid_keys}")
    return kind, key


def _comparator_group(kind: Kind, key: str, vocab: Vocabulary) -> str:
    if kind != "attribute":
        return kind
    return "numeric_attribute" if key in vocab.numeric_attributes else "string_attribute"


class _FilterParser:
    def __init__(self, source: str, vocab: Vocabulary = RUN_VOCABULARY) -> None:
        self.source = source
        self.vocab = vocab
        self.tokens = _tokenize(source)
        self.i = 0

    def next(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    def parse(self) -> list[Comparison]:
        comparisons = [self.comparison()]
        while (token := self.next()).kind != "end":
            if token.kind == "keyword" and token.value == "AND":
                comparisons.append(self.comparison())
            else:
                raise self.invalid_clause(token) or _SyntaxError(
                    token.pos, f"expected AND or the end of the filter, got {token.text}")
        return comparisons

    def invalid_clause(self, token: _Token) -> _SyntaxError | None:
        """MLflow's message for OR and parenthesised groups, quoting the whole group."""
        if token.kind == "keyword" and token.value == "OR":
            return _SyntaxError(token.pos, f"Invalid clause(s) in filter string: '{token.text}'")
        if token.kind == "lparen":
            depth, end = 0, self.tokens[-1].pos
            for t in self.tokens[self.i - 1:]:
                depth += {"lparen": 1, "rparen": -1}.get(t.kind, 0)
                if depth == 0:
                    end = t.pos + 1
                    break
            source = self.source[token.pos:end]
            return _SyntaxError(token.pos, f"Invalid clause(s) in filter string: '{source}'")
        return None

    def comparison(self) -> Comparison:
        ident = self.next()
        if ident.kind != "ident":
            raise self.invalid_clause(ident) or _SyntaxError(
                ident.pos, f"expected an identifier such as metrics.<key>, params.<key>, tags.<key> or an "
                           f"attribute, got {ident.text}")
        kind, key = _resolve(ident, vocab=self.vocab)
        op_token = self.next()
        comparator = self.comparator(op_token, ident)
        allowed = _COMPARATORS[_comparator_group(kind, key, self.vocab)]
        if comparator.startswith("IS"):
            if kind not in ("param", "tag"):
                raise _SyntaxError(op_token.pos, f"IS NULL / IS NOT NULL is only supported for tags and params, "
                                                 f"not for {ident.text}")
            return Comparison(kind, key, comparator, None, ident.pos)
        if comparator not in allowed:
            raise _SyntaxError(op_token.pos, f"Invalid comparator '{comparator}' for {ident.text}, "
                                             f"not one of {[a for a in allowed if not a.startswith('IS')]}")
        if comparator in ("IN", "NOT IN"):
            if kind == "attribute" and key not in self.vocab.list_attributes:
                allowed_lists = " or ".join(f"'{a}'" for a in self.vocab.list_attributes) or "no"
                datasets = " and the dataset 'name', 'digest' and 'context'" if self.vocab.dataset_filters else ""
                raise _SyntaxError(op_token.pos, f"Only the {allowed_lists} attribute{datasets} {'support' if datasets else 'supports'} comparison "
                                                 f"with a list of quoted string values, not {ident.text}")
            return Comparison(kind, key, comparator, self.string_list(), ident.pos)
        value_token = self.next()
        if kind == "metric" or (kind == "attribute" and key in self.vocab.numeric_attributes):
            if value_token.kind != "number":
                what = "metric" if kind == "metric" else f"numeric attribute: {key}"
                raise _SyntaxError(value_token.pos, f"Expected numeric value type for {what}. "
                                                    f"Found {value_token.text}")
            return Comparison(kind, key, comparator, value_token.value, ident.pos)
        value = self.string_value(value_token, f"Expected a quoted string value for {_ENTITY_NAMES[kind]} "
                                               f"(e.g. 'my-value'). Got value {value_token.text}")
        if comparator in ("LIKE", "ILIKE") and (len(value) - len(value.rstrip("\\"))) % 2:
            raise _SyntaxError(value_token.pos, f"{comparator} pattern {value_token.text} ends with an "
                                                "unescaped backslash")
        return Comparison(kind, key, comparator, value, ident.pos)

    def comparator(self, token: _Token, ident: _Token) -> str:
        if token.kind == "op":
            if token.value in ("<>", "=="):
                raise _SyntaxError(token.pos, f"Invalid comparator '{token.value}'; use '!=' or '='")
            return token.value
        if token.kind == "keyword":
            if token.value in ("LIKE", "ILIKE", "IN"):
                return token.value
            if token.value == "NOT":
                if (nxt := self.next()).kind == "keyword" and nxt.value == "IN":
                    return "NOT IN"
                raise _SyntaxError(nxt.pos, f"expected IN after NOT, got {nxt.text}")
            if token.value == "IS":
                nxt = self.next()
                negated = nxt.kind == "keyword" and nxt.value == "NOT"
                if negated:
                    nxt = self.next()
                if nxt.kind == "keyword" and nxt.value == "NULL":
                    return "IS NOT NULL" if negated else "IS NULL"
                raise _SyntaxError(nxt.pos, f"expected NULL after IS{' NOT' if negated else ''}, got {nxt.text}")
        raise _SyntaxError(token.pos, f"expected a comparison operator after {ident.text}, got {token.text}")

    @staticmethod
    def string_value(token: _Token, message: str) -> str:
        if token.kind == "string" or (token.kind == "ident" and token.quote == '"'):
            return token.value
        raise _SyntaxError(token.pos, message)

    def string_list(self) -> tuple[str, ...]:
        if (token := self.next()).kind != "lparen":
            raise _SyntaxError(token.pos, f"expected a parenthesised list of quoted strings, got {token.text}")
        values = []
        while True:
            token = self.next()
            values.append(self.string_value(token, f"expected a quoted string in the list, got {token.text}"))
            token = self.next()
            if token.kind == "rparen":
                return tuple(values)
            if token.kind != "comma":
                raise _SyntaxError(token.pos, f"expected ',' or ')' in the list, got {token.text}")


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_FILTER_CHARS else text[:_SHOWN_FILTER_CHARS] + "…"


def parse_filter(filter_string: str | None, vocab: Vocabulary = RUN_VOCABULARY) -> list[Comparison]:
    """The AND-ed comparisons of an MLflow search filter; an empty filter matches everything."""
    if filter_string is not None and not isinstance(filter_string, str):
        raise InvalidInput(f"Invalid filter: expected a string, got {type(filter_string).__name__}")
    if not filter_string or not filter_string.strip():
        return []
    try:
        return _FilterParser(filter_string, vocab).parse()
    except _SyntaxError as exc:
        raise InvalidInput(f'Invalid filter "{_shown(filter_string)}" at position {exc.pos}: {exc.detail}') from None


def parse_order_by(items: list[str] | None, vocab: Vocabulary = RUN_VOCABULARY) -> list[OrderTerm]:
    """MLflow order_by clauses, ``"<identifier> [ASC|DESC]"``; ascending unless DESC."""
    terms: list[OrderTerm] = []
    for item in items or []:
        try:
            term = _parse_order_item(item, vocab)
        except _SyntaxError as exc:
            raise InvalidInput(f"Invalid order_by clause '{_shown(item)}' at position {exc.pos}: {exc.detail}") \
                from None
        if any((t.kind, t.key) == (term.kind, term.key) for t in terms):
            raise InvalidInput(f"`order_by` contains duplicate fields: {items}")
        terms.append(term)
    return terms


def _parse_order_item(item: str, vocab: Vocabulary = RUN_VOCABULARY) -> OrderTerm:
    if not isinstance(item, str):
        raise _SyntaxError(0, f"expected a string, got {type(item).__name__}")
    tokens = _tokenize(item)
    ident = tokens[0]
    if ident.kind != "ident":
        raise _SyntaxError(ident.pos, f"Could not be parsed: expected an identifier, got {ident.text}")
    kind, key = _resolve(ident, orderable=True, vocab=vocab)
    ascending = True
    if tokens[1].kind != "end":
        direction = tokens[1]
        if direction.kind != "ident" or direction.quote or direction.entity or \
                direction.value.lower() not in ("asc", "desc"):
            raise _SyntaxError(direction.pos, f"Invalid ordering key in order_by clause '{item}'; "
                                              f"expected ASC or DESC, got {direction.text}")
        ascending = direction.value.lower() == "asc"
        if tokens[2].kind != "end":
            raise _SyntaxError(tokens[2].pos, f"Could not be parsed: unexpected {tokens[2].text}")
    return OrderTerm(kind, key, ascending)


def encode_page_token(offset: int) -> str:
    """MLflow's token format: base64 of ``{"offset": N}`` (opaque to clients)."""
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_page_token(page_token: str | None) -> int:
    """The row offset a page token stands for; no token means the first page."""
    if not page_token:
        return 0
    if not isinstance(page_token, str) or len(page_token) > _MAX_PAGE_TOKEN_CHARS:
        raise InvalidInput("Invalid page token, could not base64-decode")
    try:
        raw = base64.b64decode(page_token, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("Invalid page token, could not base64-decode") from None
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise InvalidInput(f"Invalid page token, decoded value={raw!r}") from None
    offset = parsed.get("offset") if isinstance(parsed, dict) else None
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= _MAX_OFFSET:
        raise InvalidInput(f"Invalid page token, parsed value={parsed!r}")
    return offset


def paginate(rows: list[Any], max_results: int, page_token: str | None) -> tuple[list[Any], str | None]:
    """Rows of a query built with the same arguments -> (this page, next_page_token or None)."""
    if len(rows) <= max_results:
        return rows, None
    return rows[:max_results], encode_page_token(decode_page_token(page_token) + max_results)


def check_max_results(max_results: int) -> int:
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise InvalidInput(f"Invalid value {max_results!r} for parameter 'max_results' supplied. "
                           "It must be a positive integer")
    if max_results > SEARCH_MAX_RESULTS_THRESHOLD:
        raise InvalidInput(f"Invalid value {max_results} for parameter 'max_results' supplied. "
                           f"It must be at most {SEARCH_MAX_RESULTS_THRESHOLD}")
    return max_results


class SqlParams:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def bind(self, value: Any, ch_type: str) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"{{{name}:{ch_type}}}"


SQL_COMPARATORS = {op: op for op in ("=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN")}


_KEYED_SOURCES = {
    # The *_by_key tables (migration 012) hold the same rows ordered by key, so each source reads the
    # rows of its key only, not those of every key of every run.
    # Exactly one row per (run, key): FINAL applies max((step, timestamp, value)). (A GROUP BY run_id
    # instead was ~20% faster over unmerged parts and ~40% slower once merged: bench_search.py.)
    "metric": "SELECT run_id, toNullable(tupleElement(latest, 3)) AS v FROM {db}.latest_metrics_by_key FINAL "
              "WHERE key = {key}",
    # Params are immutable, so any stored row of a key holds its value.
    "param": "SELECT run_id, toNullable(value) AS v FROM {db}.params_by_key WHERE key = {key}",
    # tags_latest semantics: the newest row per run and key, unless it is a delete.
    "tag": "SELECT run_id, toNullable(argMax(value, src_offset)) AS v, argMax(deleted, src_offset) AS is_deleted "
           "FROM {db}.tags_by_key WHERE key = {key} GROUP BY run_id HAVING is_deleted = 0",
}

# The same as of a point of the log: from the tables that keep every row with its offset.
_KEYED_SOURCES_AS_OF = {
    "metric": "SELECT run_id, toNullable(tupleElement(max((step, timestamp_ms, value)), 3)) AS v "
              "FROM {db}.metrics WHERE key = {key}{cut} GROUP BY run_id",
    "param": "SELECT run_id, toNullable(value) AS v FROM {db}.params WHERE key = {key}{cut}",
    "tag": "SELECT run_id, toNullable(argMax(value, src_offset)) AS v, argMax(deleted, src_offset) AS is_deleted "
           "FROM {db}.tags WHERE key = {key}{cut} GROUP BY run_id HAVING is_deleted = 0",
}


def keyed_sources(cut: str | None = None) -> dict[str, str]:
    """The per-key sources; with ``cut`` (a row condition on ``src_partition``/``src_offset``, see
    ``server.reader.LOG_CUT``) only rows of events up to that point of the log, for ``as_of`` reads."""
    if cut is None:
        return _KEYED_SOURCES
    rows = " AND " + cut.replace("{", "{{").replace("}", "}}")  # kept as is by the sources' str.format
    return {kind: source.replace("{cut}", rows) for kind, source in _KEYED_SOURCES_AS_OF.items()}


class Joins:
    """A LEFT ANY JOIN per (kind, key) a search uses, giving a column ``<alias>.v``.

    A key the run lacks is NULL, so comparisons on it are false (MLflow: a run without the key never
    matches) and ``IS NULL`` and NULLS LAST ordering need no special case.
    """

    def __init__(self, db: str, p: SqlParams, sources: dict[str, str] | None = None, id_column: str = "run_id",
                 outer: str = "r") -> None:
        self.db, self.p = db, p
        self.sources = _KEYED_SOURCES if sources is None else sources
        self.id_column, self.outer = id_column, outer
        self.aliases: dict[tuple[str, str, str], str] = {}
        self.clauses: list[str] = []

    def column(self, kind: str, key: str, extra: str = "") -> str:
        """``extra``: an already bound SQL condition some sources take (a logged-model metric's datasets)."""
        alias = self.aliases.get((kind, key, extra))
        if alias is None:
            alias = self.aliases[(kind, key, extra)] = f"{kind[0]}{len(self.aliases)}"
            source = self.sources[kind].format(db=self.db, key=self.p.bind(key, "String"), extra=extra)
            self.clauses.append(f"LEFT ANY JOIN ({source}) AS {alias} "
                                f"ON {alias}.{self.id_column} = {self.outer}.{self.id_column}")
        return f"{alias}.v"


def _attribute_condition(c: Comparison, p: SqlParams) -> str:
    op = SQL_COMPARATORS[c.comparator]
    if c.comparator in ("IN", "NOT IN"):
        return f"run_id {op} {p.bind(list(c.value or ()), 'Array(String)')}"
    return f"{c.key} {op} {p.bind(c.value, 'Float64' if c.key in _NUMERIC_ATTRIBUTES else 'String')}"


# The dataset field a ``datasets.<key>`` filter compares; NULL (never matching) for an input
# without a context tag.
_DATASET_COLUMNS = {
    "name": "name",
    "digest": "digest",
    "context": "if(has(tag_keys, 'mlflow.data.context'), tag_values[indexOf(tag_keys, 'mlflow.data.context')], NULL)",
}


def _dataset_condition(c: Comparison, db: str, p: SqlParams, cut: str | None = None) -> str:
    """Runs with at least one dataset input satisfying the comparison (MLflow's ``any``)."""
    is_list = c.comparator in ("IN", "NOT IN")
    value = p.bind(list(c.value or ()) if is_list else c.value, "Array(String)" if is_list else "String")
    return (f"run_id IN (SELECT run_id FROM {db}.dataset_inputs "
            f"WHERE {_DATASET_COLUMNS[c.key]} {SQL_COMPARATORS[c.comparator]} {value}"
            f"{' AND ' + cut if cut else ''})")


def keyed_condition(c: Comparison, column: str, p: SqlParams) -> str:
    if c.comparator in ("IS NULL", "IS NOT NULL"):
        return f"{column} {c.comparator}"
    if c.comparator in ("IN", "NOT IN"):  # tags only; a run without the tag matches neither (NULL)
        return f"{column} {c.comparator} {p.bind(list(c.value or ()), 'Array(String)')}"
    value = p.bind(c.value, "Float64" if c.kind == "metric" else "String")
    return f"{column} {SQL_COMPARATORS[c.comparator]} {value}"


RUN_INFO_COLUMNS = ("run_id", "run_name", "experiment_id", "user_id", "status", "start_time", "end_time",
                    "lifecycle_stage")


def _current_runs(db: str, experiments: str, cut: str | None) -> str:
    """Each run of ``experiments`` once, as its newest version (as of ``cut``, when given)."""
    columns = ("run_id, run_name, experiment_id, user_id, status, start_time, end_time,\n"
               "                artifact_uri, lifecycle_stage")
    if cut is None:
        # A run never changes experiment, so the filter can come before FINAL picks the newest version.
        return f"(SELECT {columns}\n         FROM {db}.runs_current FINAL WHERE experiment_id IN {experiments})"
    return (f"(SELECT {columns}\n         FROM {db}.runs WHERE experiment_id IN {experiments} AND {cut}\n"
            "         ORDER BY run_id, src_offset DESC LIMIT 1 BY run_id)")


def build_search_query(database: str, experiment_ids: list[str], filter_string: str | None,
                       order_by: list[str] | None, run_view_type: str, max_results: int,
                       page_token: str | None, cut: str | None = None) -> tuple[str, dict[str, Any]]:
    """SQL + parameters selecting a page of runs: the ``RUN_INFO_COLUMNS`` (``run_id`` first) and
    ``order_0..n`` (one per order_by item).

    The query asks for ``max_results + 1`` rows: pass the result to :func:`paginate` to cut the
    page and get the next token. Each (kind, key) is joined once however many comparisons and
    order_by items use it (on the embedded engine every table read costs a few ms). Runs are read
    from ``runs_current`` (one row per run once merged, ordered by experiment). With ``cut``
    (``server.reader.LOG_CUT``) every table is read as of that point of the log from the tables
    that keep every version; the cut's own parameters are the caller's to add.
    """
    db = check_database_name(database)
    check_max_results(max_results)
    offset = decode_page_token(page_token)
    if run_view_type not in RUN_VIEW_TYPES:
        raise InvalidInput(f"Invalid run_view_type {run_view_type!r}: expected one of {list(RUN_VIEW_TYPES)}")
    comparisons = parse_filter(filter_string)
    terms = parse_order_by(order_by)

    p = SqlParams()
    joins = Joins(db, p, keyed_sources(cut))
    experiments = p.bind([str(e) for e in experiment_ids], "Array(String)")
    run_where = ["1"]
    stages = RUN_VIEW_TYPES[run_view_type]
    if stages is not None:
        run_where = [f"lifecycle_stage IN {p.bind(list(stages), 'Array(String)')}"]
    where = []
    for c in comparisons:
        if c.kind == "attribute":
            run_where.append(_attribute_condition(c, p))
        elif c.kind == "dataset":
            run_where.append(_dataset_condition(c, db, p, cut))
        else:
            where.append(keyed_condition(c, joins.column(c.kind, c.key), p))

    columns, order = [f"r.{c} AS {c}" for c in RUN_INFO_COLUMNS], []
    for i, term in enumerate(terms):
        source = f"r.{term.key}" if term.kind == "attribute" else joins.column(term.kind, term.key)
        columns.append(f"{source} AS order_{i}")
        order.append(f"order_{i} {'ASC' if term.ascending else 'DESC'} NULLS LAST")
    ordered = {(t.kind, t.key) for t in terms}
    if ("attribute", "start_time") not in ordered:
        order.append("r.start_time DESC")
    if ("attribute", "run_id") not in ordered:
        order.append("r.run_id ASC")

    p.values["limit"] = max_results + 1
    p.values["offset"] = offset
    and_ = "\n  AND "
    run_and = "\n        AND "
    sql = (f"SELECT {', '.join(columns)}\n"
           f"FROM (SELECT * FROM {_current_runs(db, experiments, cut)}\n"
           f"      WHERE {run_and.join(run_where)}) AS r\n"
           + "".join(j + "\n" for j in joins.clauses)
           + (f"WHERE {and_.join(where)}\n" if where else "")
           + f"ORDER BY {', '.join(order)}\n"
           "LIMIT {limit:UInt64} OFFSET {offset:UInt64}")
    return sql, p.values
