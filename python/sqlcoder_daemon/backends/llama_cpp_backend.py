"""A CPU backend: a GGUF model run by llama.cpp through llama-cpp-python (``pip install 'sqlcoder-daemon[llama-cpp]'``).

For database hosts without a GPU, as defog serves sqlcoder-7b-2 (Q4_K_M GGUF).
Decoding is greedy (llama.cpp has no beam search): a request's ``num_beams``
is accepted and decoded greedily, and ``status`` says ``decoding: greedy``.
The loop is the daemon's own, one token at a time, so a request whose client
left or whose deadline passed stops at its next token (or its next chunk of
prompt). Prompt prefixes are reused from llama.cpp's live KV cache and from
saved per-sequence KV states (an LRU bounded by ``--prefix-cache-bytes``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DaemonError, Internal, TooLarge
from ..jobs import GenerationResult, Job
from ..memory import proc_bytes
from ..repetition import loops
from ..settings import Settings
from .base import Backend
from .llama_cpp_state import StateCache, check_gguf_fits, common_prefix

__all__ = ["LlamaCppBackend", "check_gguf", "import_llama_cpp"]

log = logging.getLogger(__name__)

MISSING = ("the llama_cpp backend needs the optional 'llama-cpp-python' package, which is not installed: "
           "pip install 'sqlcoder-daemon[llama-cpp]' (builds llama.cpp with the C compiler), "
           "or use --backend transformers")

#: Prompt tokens evaluated between two checks of the job's cancel flag and deadline.
PREFILL_CHUNK = 256


def import_llama_cpp() -> Any:
    """llama_cpp, or an ImportError that says how to get it."""
    try:
        import llama_cpp
    except ImportError as e:
        raise ImportError(MISSING) from e
    return llama_cpp


def check_gguf(path: Path) -> None:
    """Refuse, with one line, a model path that is not a readable GGUF file (llama.cpp's own errors are vaguer)."""
    if path.is_dir():
        raise OSError(f"--model {path}: a directory; the llama_cpp backend takes a .gguf file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise OSError(f"--model {path}: {e.strerror or e}") from None
    if magic != b"GGUF":
        raise OSError(f"--model {path}: not a GGUF file (it does not start with 'GGUF')")


class LlamaCppBackend(Backend):
    """One llama.cpp context (one sequence); the scheduler's batches run one request after another."""

    name = "llama_cpp"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.llama_cpp = import_llama_cpp()  # fail at construction: before any loading work
        self.llm: Any = None  # llama_cpp.Llama once loaded
        self.cache = StateCache(settings.prefix_cache_bytes, settings.prefix_cache_min_tokens)
        self._info: dict[str, Any] = {}

    def load(self) -> None:
        s = self.settings
        path = Path(str(s.model)).expanduser()
        check_gguf(path)
        estimate = check_gguf_fits(path, s.llama_n_ctx, self.cache.max_bytes) \
            if s.check_memory else None
        threads = s.cpu_threads or None
        t0 = time.monotonic()
        try:
            self.llm = self.llama_cpp.Llama(model_path=str(path), n_ctx=s.llama_n_ctx,
                                            n_threads=threads, n_threads_batch=threads, n_gpu_layers=0,
                                            logits_all=False, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise OSError(f"--model {path}: llama.cpp cannot load it (truncated or corrupt GGUF?): {e}") from None
        llm = self.llm
        self.n_vocab = llm.n_vocab()
        self.eos = llm.token_eos()
        n_ctx = llm.n_ctx()
        trained = int(llm.metadata.get(f"{llm.metadata.get('general.architecture', 'llama')}.context_length", n_ctx))
        buf = self.llama_cpp.ctypes.create_string_buffer(256)
        self.llama_cpp.llama_model_desc(llm.model, buf, 256)
        desc = buf.value.decode(errors="replace")  # e.g. "llama 7B Q4_K - Medium"
        log.info("loaded %s in %.1f s (%s, context %d of %d, %d threads)", path, time.monotonic() - t0, desc,
                 n_ctx, trained, llm.n_threads)
        self._info = {
            "device": "cpu",
            "quantization": desc.split(" ", 2)[-1] if desc.count(" ") >= 2 else desc,
            "dtype": "gguf",
            "context_length": n_ctx,
            "decoding": "greedy",
            "threads": llm.n_threads,
            "model_bytes": int(self.llama_cpp.llama_model_size(llm.model)),
        }
        if estimate:
            self._info["memory_estimate"] = estimate

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def stats(self) -> dict[str, Any]:
        return {"prefix_cache": self.cache.stats(), "memory": {"rss_bytes": proc_bytes("/proc/self/status", "VmRSS")}}

    def grammar_support(self) -> dict[str, Any]:
        return {"supported": True, "format": "gbnf", "library": "llama.cpp", "beam_search": False}

    # -- tokens --------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        # llama_tokenize only reads the vocabulary: safe beside a running decode.
        return [len(self.llm.tokenize(t.encode(), add_bos=False, special=False)) if t else 0 for t in texts]

    # -- generation ----------------------------------------------------------
    def generate(self, jobs: Sequence[Job]) -> list[GenerationResult | DaemonError]:
        out: list[GenerationResult | DaemonError] = []
        for job in jobs:
            if job.should_stop():
                out.append(GenerationResult("", "stop", 0, 0))
                continue
            try:
                out.append(self._one(job))
            except DaemonError as e:
                out.append(e)
            except RuntimeError as e:  # llama_decode failed (e.g. no KV slot); the context is reset
                log.exception("llama.cpp failed")
                self.llm.reset()
                out.append(Internal(f"llama.cpp: {e}"))
        return out

    def _one(self, job: Job) -> GenerationResult:
        llm, req = self.llm, job.request
        tokens = llm.tokenize(req.prompt.encode(), add_bos=True, special=False)
        ctx = self._info["context_length"]
        if len(tokens) >= ctx:
            raise TooLarge(f"the prompt has {len(tokens)} tokens; the model's context is {ctx}")
        max_new = max(1, min(req.max_new_tokens, ctx - len(tokens)))
        reused = self._restore_prefix(tokens)
        pos = reused
        while pos < len(tokens):
            if job.should_stop():
                return GenerationResult("", "stop", len(tokens), 0, reused)
            chunk = tokens[pos:pos + PREFILL_CHUNK]
            llm.eval(chunk)  # drops the KV cache past llm.n_tokens first
            pos += len(chunk)
        if reused * 2 < len(tokens):
            # Mostly new (another schema): save its KV state, so it survives the prompts that displace it.
            # Copying a state costs time (a 7B model's 2,000-token state is about 1 GiB), so prompts that
            # mostly reused one do not save theirs.
            self.cache.store(tokens, self._save_sequence)
        completion: list[int] = []
        finish = "length"
        grammar = self._grammar(req.grammar.gbnf) if req.grammar is not None and req.grammar.gbnf else None
        try:
            while True:
                token = self._greedy() if grammar is None else grammar.next_token()
                completion.append(token)
                if token == self.eos:
                    finish = "eos"
                    break
                if len(completion) >= max_new:
                    break
                if loops(completion, self.settings.repetition_guard_tokens):
                    finish = "repetition"
                    break
                if job.should_stop():  # cancellation and deadlines take effect at the next token
                    finish = "stop"
                    break
                llm.eval([token])
        finally:
            if grammar is not None:
                grammar.close()
        text = llm.detokenize([t for t in completion if t != self.eos], special=False).decode("utf-8", "replace")
        return GenerationResult(text=text, finish_reason=finish, prompt_tokens=len(tokens),
                                completion_tokens=len(completion), cached_tokens=reused,
                                constrained=grammar is not None)

    def _grammar(self, gbnf: str) -> _GrammarSampler | None:
        """llama.cpp's own grammar sampler for ``gbnf``; None (logged) when llama.cpp cannot parse it."""
        lc = self.llama_cpp
        sampler = lc.llama_sampler_init_grammar(lc.llama_model_get_vocab(self.llm.model), gbnf.encode(), b"root")
        if not sampler:
            log.warning("llama.cpp could not parse a request's grammar; it is decoded unconstrained")
            return None
        return _GrammarSampler(lc, self.llm, sampler, self.n_vocab)

    def _greedy(self) -> int:
        import numpy as np

        ptr = self.llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))))


    def _restore_prefix(self, tokens: list[int]) -> int:
        """Keep the longest prefix of ``tokens`` already in llama.cpp's KV cache, or restore a saved one.

        At least one token is always evaluated, so that the logits are the prompt's own.
        """
        llm = self.llm
        if not self.cache.enabled:  # --prefix-cache-bytes 0: every prompt is evaluated from its start
            llm.n_tokens = 0
            return 0
        limit = len(tokens) - 1
        live = common_prefix(llm.input_ids[: llm.n_tokens], tokens, limit)
        n, state = self.cache.lookup(tokens, limit, live)
        if state is not None:
            self._load_sequence(state, tokens, n)
            live = n
        elif live < self.cache.min_tokens:
            live = 0
        llm.n_tokens = live
        return live

    def _save_sequence(self) -> bytes:
        lc = self.llama_cpp
        size = lc.llama_state_seq_get_size(self.llm.ctx, 0)
        buf = (lc.ctypes.c_uint8 * size)()
        n = lc.llama_state_seq_get_data(self.llm.ctx, buf, size, 0)
        return bytes(buf)[:n]

    def _load_sequence(self, state: bytes, tokens: list[int], n: int) -> None:
        lc, llm = self.llama_cpp, self.llm
        llm._ctx.kv_cache_seq_rm(0, 0, -1)
        src = (lc.ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if lc.llama_state_seq_set_data(llm.ctx, src, len(state), 0) != len(state):
            llm.reset()
            raise Internal("llama.cpp could not restore a cached prefix")
        # The restored state holds (at least) the matched prefix; the caller truncates to it.
        llm.input_ids[:n] = tokens[:n]

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None


class _GrammarSampler:
    """Greedy decoding under a llama.cpp grammar sampler. The greedy token is checked alone first: when the
    grammar allows it (most steps, for a model that writes SQL) the whole vocabulary is never checked."""

    def __init__(self, lc: Any, llm: Any, sampler: Any, n_vocab: int):
        import numpy as np

        self.lc, self.llm, self.sampler, self.n_vocab = lc, llm, sampler, n_vocab
        dtype = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        self.all = np.zeros(n_vocab, dtype=dtype)
        self.all["id"] = np.arange(n_vocab, dtype=np.int32)
        self.one = np.zeros(1, dtype=dtype)

    def _apply(self, cells: Any) -> None:
        lc = self.lc
        array = lc.llama_token_data_array(data=cells.ctypes.data_as(lc.llama_token_data_p), size=len(cells),
                                          selected=-1, sorted=False)
        lc.llama_sampler_apply(self.sampler, lc.ctypes.byref(array))

    def next_token(self) -> int:
        import numpy as np

        logits = np.ctypeslib.as_array(self.lc.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))
        token = int(np.argmax(logits))
        self.one[0] = (token, logits[token], 0.0)
        self._apply(self.one)
        if not np.isfinite(self.one[0]["logit"]):
            self.all["logit"] = logits
            self._apply(self.all)
            token = int(self.all["id"][int(np.argmax(self.all["logit"]))])
        self.lc.llama_sampler_accept(self.sampler, token)
        return token

    def close(self) -> None:
        self.lc.llama_sampler_free(self.sampler)
