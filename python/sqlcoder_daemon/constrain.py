"""Grammar-constrained decoding for the transformers backend: a logits processor over llguidance matchers.

Each job of a batch may carry its own grammar (its Lark form; the extension builds it from the
caller's schema, sqlcoder/grammar.py). Before every step the processor masks, row by row, the tokens
the row's grammar does not allow next. Beam search reorders and forks rows between steps, so a row's
matcher is found by the tokens the row generated: a child row continues its parent's matcher (a copy,
when several children share one parent), which follows beam reordering without hooks into the search.
Rows of jobs without a grammar are left alone; batching and the prefix cache do not see the processor
(it reads only the generated part of each row, after the common input width).

Compiling a grammar (its lexer over the whole vocabulary) costs far more than one step, so compiled
matchers are kept in a small LRU by grammar text and copied for each job.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["GrammarCache", "GrammarProcessor", "import_llguidance"]

log = logging.getLogger(__name__)

MISSING = ("grammar-constrained decoding with the transformers backend needs the 'llguidance' package "
           "(a dependency of sqlcoder's daemon): pip install llguidance")


def import_llguidance() -> Any:
    try:
        import llguidance
    except ImportError as e:
        raise ImportError(MISSING) from e
    return llguidance


class GrammarCache:
    """Compiled matchers by grammar text (at most ``size``), for one tokenizer; thread-safe."""

    def __init__(self, hf_tokenizer: Any, size: int = 16):
        self.llguidance = import_llguidance()
        import llguidance.hf

        self.tokenizer = llguidance.hf.from_tokenizer(hf_tokenizer)
        self.n_vocab = int(self.tokenizer.vocab_size)
        self._blank: Any = None
        self.size = size
        self._lock = threading.Lock()
        self._compiled: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.compiles = self.hits = self.errors = 0

    def matcher(self, lark: str) -> Any | None:
        """A fresh matcher at the start of ``lark``'s grammar; None (logged) when it does not compile."""
        with self._lock:
            template = self._compiled.get(lark)
            if template is not None:
                self._compiled.move_to_end(lark)
                self.hits += 1
                return template.deep_copy()
        lg = self.llguidance
        limits = lg.LLParserLimits(verbose_errors=False)  # errors would echo the caller's schema into the log
        try:
            template = lg.LLMatcher(self.tokenizer, lg.LLMatcher.grammar_from_lark(lark), log_level=0, limits=limits)
        except (ValueError, RuntimeError) as e:
            template = None
            log.warning("a request's grammar does not compile (%s); it is decoded unconstrained", str(e)[:200])
        if template is None or template.is_error():
            if template is not None:
                log.warning("a request's grammar does not compile (%s); it is decoded unconstrained",
                            template.get_error()[:200])
            with self._lock:
                self.errors += 1
            return None
        with self._lock:
            self.compiles += 1
            self._compiled[lark] = template
            while len(self._compiled) > self.size:
                self._compiled.popitem(last=False)
        return template.deep_copy()

    def blank_tokens(self) -> Any:
        """A bool tensor over the vocabulary: tokens that are only whitespace (computed once)."""
        import torch

        if self._blank is None:
            decode = self.tokenizer.decode_bytes
            self._blank = torch.tensor([(b := decode([i])) != b"" and b.isspace() for i in range(self.n_vocab)],
                                       dtype=torch.bool)
        return self._blank

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"compiled": len(self._compiled), "compiles": self.compiles, "hits": self.hits,
                    "errors": self.errors}


class GrammarProcessor:
    """A transformers ``LogitsProcessor``: ``matchers[j]`` constrains job ``j``'s rows (None: unconstrained).

    ``width`` is the input width (prompt and padding): what a row holds past it is what it generated.
    """

    #: Whitespace-only tokens in a row after which only other tokens (or the end) may follow. The Lark form
    #: skips whitespace between tokens without bound; a model that wants to write something the grammar
    #: refuses (prose after the query) would otherwise spin on blank lines up to max_new_tokens.
    MAX_BLANK_RUN = 3

    def __init__(self, matchers: Sequence[Any | None], width: int, n_vocab: int, blank: Any = None):
        self.blank = blank
        self.start = list(matchers)
        self.width = width
        self.n_vocab = n_vocab
        self._by_prefix: list[dict[tuple[int, ...], Any]] = [{(): m} if m is not None else {} for m in matchers]
        self.steps = 0

    def _advance(self, job: int, rows: list[tuple[int, tuple[int, ...]]]) -> dict[int, Any]:
        """The matcher of each of ``job``'s rows, continuing its parent row's matcher by the row's last token."""
        known = self._by_prefix[job]
        children: dict[tuple[int, ...], list[tuple[int, ...]]] = collections.defaultdict(list)
        for _, seq in rows:
            if seq not in known and seq:
                if seq[:-1] in known and seq not in children[seq[:-1]]:
                    children[seq[:-1]].append(seq)
        now: dict[tuple[int, ...], Any] = {seq: known[seq] for _, seq in rows if seq in known}
        for parent, kids in children.items():
            base = known[parent]
            for i, seq in enumerate(kids):
                m = base if i == len(kids) - 1 and parent not in now else base.deep_copy()
                if not m.is_stopped():
                    m.consume_token(seq[-1])
                now[seq] = m
        self._by_prefix[job] = now
        return {row: now[seq] for row, seq in rows if seq in now}

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        self.steps += 1
        n_rows = input_ids.shape[0]
        per_job = max(1, n_rows // len(self.start))
        generated = input_ids[:, self.width:].tolist()
        words = (scores.shape[1] + 31) // 32
        mask = torch.full((n_rows, words), -1, dtype=torch.int32)
        masked = False
        for job in range(len(self.start)):
            if self.start[job] is None:
                continue
            rows = [(r, tuple(generated[r])) for r in range(job * per_job, (job + 1) * per_job)]
            for row, matcher in self._advance(job, rows).items():
                if matcher.is_error() or matcher.is_stopped():
                    continue  # a finished row (padding) or a token the mask did not offer: leave it alone
                view = mask[row, : (self.n_vocab + 31) // 32]
                matcher.unsafe_compute_mask_ptr(view.data_ptr(), view.numel() * 4)
                if scores.shape[1] > self.n_vocab:
                    mask[row, self.n_vocab // 32:] &= _tail_mask(self.n_vocab, words)
                masked = True
        if not masked:
            return scores
        bits = (mask.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
        allowed = bits.reshape(n_rows, -1)[:, : scores.shape[1]].to(torch.bool)
        if self.blank is not None:
            for row, seq in enumerate(generated):
                run = seq[-self.MAX_BLANK_RUN:]
                if len(run) == self.MAX_BLANK_RUN and all(t < self.n_vocab and self.blank[t] for t in run):
                    allowed[row, : self.n_vocab] &= ~self.blank
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))

    def constrained(self, job: int) -> bool:
        """Whether job ``job`` was decoded under its grammar (compiled, and never left in an error state)."""
        if self.start[job] is None:
            return False
        return all(not m.is_error() for m in self._by_prefix[job].values())


def _tail_mask(n_vocab: int, words: int) -> Any:
    """Bits of the words from ``n_vocab // 32`` on that stand for ids below ``n_vocab``; embedding rows past
    the tokenizer's vocabulary are never allowed."""
    import torch

    out = torch.zeros(words - n_vocab // 32, dtype=torch.int32)
    if n_vocab % 32:
        out[0] = (1 << (n_vocab % 32)) - 1
    return out
