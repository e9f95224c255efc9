"""The user's search text, parsed once: words, "quoted phrases", ``-excluded`` terms and ``or``.

The same little language PostgreSQL's ``websearch_to_tsquery`` reads, so that both backends find the same
messages: PostgreSQL gets the raw text, SQLite gets ``fts5()``, an FTS5 expression in which every term is a
quoted string (user text can never become an FTS5 operator or column filter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_WORD = re.compile(r"\w", re.UNICODE)


class QueryError(ValueError):
    """The search text cannot be searched for (the message says why)."""


@dataclass(frozen=True)
class Term:
    text: str  # a word or a phrase, as typed (without the quotes and the minus)
    negated: bool = False


@dataclass(frozen=True)
class Query:
    raw: str
    groups: tuple[tuple[Term, ...], ...]  # OR of ANDs: ``a b or c`` is ((a, b), (c,))

    @property
    def positive_terms(self) -> list[str]:
        """The terms a result contains (what is highlighted)."""
        return [t.text for group in self.groups for t in group if not t.negated]

    def fts5(self) -> str:
        """This query as an FTS5 MATCH expression; NOT is binary in FTS5, so it follows a positive term."""

        parts = []
        for group in self.groups:
            positive = " AND ".join(fts5_string(t.text) for t in group if not t.negated)
            negated = "".join(f" NOT {fts5_string(t.text)}" for t in group if t.negated)
            parts.append(f"({positive}{negated})")
        return " OR ".join(parts)


def fts5_string(text: str) -> str:
    """``text`` as one FTS5 string (a phrase of its tokens): quotes doubled, so no operator can get through."""
    return '"' + text.replace('"', '""') + '"'


def query_parse(raw: str, *, max_length: int) -> Query:
    """Parse the search text; raises QueryError when it is empty, too long, or has no word to look for."""
    text = raw.strip()
    if not text:
        raise QueryError("q is empty: type a word to search for")
    if len(text) > max_length:
        raise QueryError(f"q is {len(text)} characters long; at most {max_length} are allowed")
    groups: list[list[Term]] = [[]]
    for match in _TOKEN.finditer(text):
        minus, phrase, word = match.groups()
        if word is not None and word.lower() == "or":
            if groups[-1]:
                groups.append([])
            continue
        if word is not None:
            minus, body = ("-", word[1:]) if word.startswith("-") else ("", word)
        else:
            body = phrase
        if not _WORD.search(body):
            continue  # punctuation only: neither database indexes it
        groups[-1].append(Term(body, negated=bool(minus)))
    kept = tuple(tuple(g) for g in groups if any(not t.negated for t in g))
    if not kept:
        raise QueryError("q has no word to search for (only punctuation, or only -excluded words)")
    return Query(raw=text, groups=kept)
