"""A small in-process full-text index on tantivy (BM25), shared by conversation search and the
knowledge base.

Why tantivy: a well-kept search library (the Rust engine behind Quickwit, with official Python
bindings) that ranks with BM25, updates incrementally (add, delete by key, commit) and runs in
the node's memory with nothing to install or download, so search works offline out of the box and
with any Redis (the embedded one has no search module). Each node keeps its own index and fills it
from Redis, the one source of truth (docs/decisions.md, "Search").

The tokenizer splits words of letters and digits and treats each Han, kana and Hangul character as
a token of its own, so Chinese text (no spaces) is searchable without a dictionary; everything is
lower-cased. User input never reaches tantivy's query language: :func:`plain_query` keeps words
only, so quotes, brackets or ``AND`` typed by a person cannot make a query fail.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Iterable

import tantivy

TOKENIZER = "segue_words"
_TOKEN_RE = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]|[\p{L}\p{N}\p{M}]+"
# characters of tantivy's query language, and anything else that is not part of a word
_NOT_WORD = re.compile(r"[^\w]+", re.UNICODE)
MAX_QUERY_WORDS = 64


def plain_query(text: str) -> str:
    """``text`` as space-separated lower-case words (no operators, quotes or field names)."""
    words = [w for w in _NOT_WORD.sub(" ", text.lower()).split() if w]
    return " ".join(words[:MAX_QUERY_WORDS])


def char_ranges(fragment: str, byte_ranges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """tantivy's highlight ranges are UTF-8 byte offsets; clients index strings by character."""
    raw = fragment.encode()
    out = []
    for start, end in byte_ranges:
        a = len(raw[:start].decode(errors="ignore"))
        b = len(raw[:end].decode(errors="ignore"))
        if b > a:
            out.append([a, b])
    return out


@dataclass
class Field:
    name: str
    kind: str  # "key" (exact, stored), "text" (tokenized, stored), "int" (indexed, fast, stored)


class TextIndex:
    """One tantivy index in memory: documents with exact keys, texts and integers.

    Why a wrapper: tantivy wants its writer used by one thread, a commit and a reload before new
    documents are searchable, and its tokenizer registered on every index; this keeps those rules
    in one place. Calls are synchronous and short (a commit of a few documents takes
    milliseconds); the lock keeps a search from meeting a half-done commit's reload."""

    def __init__(self, fields: list[Field], heap_bytes: int = 20_000_000, stop_words: str | None = None) -> None:
        sb = tantivy.SchemaBuilder()
        for f in fields:
            if f.kind == "key":
                sb.add_text_field(f.name, stored=True, tokenizer_name="raw")
            elif f.kind == "text":
                sb.add_text_field(f.name, stored=True, tokenizer_name=TOKENIZER)
            elif f.kind == "int":
                sb.add_integer_field(f.name, stored=True, indexed=True, fast=True)
            else:  # pragma: no cover - a programming error
                raise ValueError(f"unknown field kind {f.kind!r}")
        self.schema = sb.build()
        self.index = tantivy.Index(self.schema)
        builder = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(_TOKEN_RE))
                   .filter(tantivy.Filter.lowercase()).filter(tantivy.Filter.remove_long(60)))
        if stop_words:  # e.g. "english": "how do I" alone must not make an article relevant
            builder = builder.filter(tantivy.Filter.stopword(stop_words))
        analyzer = builder.build()
        self.analyzer = analyzer
        self.index.register_tokenizer(TOKENIZER, analyzer)
        self._writer = self.index.writer(heap_bytes, 1)
        self._lock = threading.Lock()
        self._dirty = False

    def add(self, doc: dict[str, Any]) -> None:
        self._writer.add_document(tantivy.Document(**{k: v for k, v in doc.items() if v is not None}))
        self._dirty = True

    def add_values(self, **values: Any) -> None:
        """:meth:`add` for a caller that gives every field (none None): nothing filtered per
        document (the conversation search adds one per message)."""
        self._writer.add_document(tantivy.Document(**values))
        self._dirty = True

    def delete(self, field: str, value: str) -> None:
        self._writer.delete_documents_by_term(field, value)
        self._dirty = True

    def clear(self) -> None:
        self._writer.delete_all_documents()
        self._dirty = True

    def commit(self) -> None:
        """Make what was added and deleted searchable (no-op when nothing changed)."""
        if not self._dirty:
            return
        with self._lock:
            self._writer.commit()
            self.index.reload()
            self._dirty = False

    # --- queries ---------------------------------------------------------------------------

    def text_query(self, text: str, fields: list[str], all_words: bool,
                   boosts: dict[str, float] | None = None) -> Any | None:
        """A BM25 query for the words of ``text`` (None: no words)."""
        words = plain_query(text)
        # only stop words (or nothing) left: no query at all (an empty query would match everything)
        if not words or not self.analyzer.analyze(words):
            return None
        query, _errors = self.index.parse_query_lenient(words, fields, field_boosts=boosts or {},
                                                        conjunction_by_default=all_words)
        return query

    def term(self, field: str, value: str) -> Any:
        return tantivy.Query.term_query(self.schema, field, value)

    def int_range(self, field: str, low: int | None, high: int | None) -> Any:
        return tantivy.Query.range_query(self.schema, field, tantivy.FieldType.Integer, low, high)

    @staticmethod
    def all_of(queries: list[Any]) -> Any:
        queries = [q for q in queries if q is not None]
        if not queries:
            return tantivy.Query.all_query()
        if len(queries) == 1:
            return queries[0]
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, q) for q in queries])

    @staticmethod
    def any_of(queries: list[Any]) -> Any:
        return tantivy.Query.boolean_query([(tantivy.Occur.Should, q) for q in queries])

    def search(self, query: Any, limit: int, offset: int = 0, newest_by: str | None = None,
               snippet_field: str | None = None, snippet_query: Any = None,
               snippet_chars: int = 160) -> list[dict[str, Any]]:
        """Hits as stored documents (first value of each field), best first (or newest first by
        the integer field ``newest_by``), with ``_score`` and, for ``snippet_field``, ``_snippet``:
        ``{"text", "highlights": [[start, end], ...]}`` (character offsets)."""
        with self._lock:
            searcher = self.index.searcher()
            if newest_by:
                result = searcher.search(query, limit, count=False, offset=offset, order_by_field=newest_by)
            else:
                result = searcher.search(query, limit, count=False, offset=offset)
            generator = None
            if snippet_field and snippet_query is not None:
                generator = tantivy.SnippetGenerator.create(searcher, snippet_query, self.schema, snippet_field)
                generator.set_max_num_chars(snippet_chars)
            hits = []
            for score, address in result.hits:
                doc = searcher.doc(address)
                flat: dict[str, Any] = {k: (v[0] if isinstance(v, list) and v else v) for k, v in doc.to_dict().items()}
                flat["_score"] = float(score) if not newest_by else None
                if snippet_field:
                    text = flat.get(snippet_field) or ""
                    snip = None
                    if generator is not None:
                        snippet = generator.snippet_from_doc(doc)
                        fragment = snippet.fragment()
                        if fragment:
                            snip = {"text": fragment, "highlights": char_ranges(
                                fragment, [(h.start, h.end) for h in snippet.highlighted()])}
                    if snip is None:
                        snip = {"text": text[:snippet_chars], "highlights": []}
                    flat["_snippet"] = snip
                hits.append(flat)
            return hits

    def count(self) -> int:
        with self._lock:
            return int(self.index.searcher().num_docs)
