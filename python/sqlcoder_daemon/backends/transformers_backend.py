"""The default backend: a transformers causal LM, quantized by bitsandbytes, placed by accelerate.

Generation follows SQLCoder's reference inference: deterministic (greedy or
beam search), end-of-sequence token as padding, completion decoded with
special tokens skipped. Batch-1 requests reuse the prefix KV cache.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..constrain import GrammarCache, GrammarProcessor
from ..errors import DaemonError, TooLarge
from ..jobs import GenerationResult, Job
from ..memory import check_fits, proc_bytes
from ..prefix_cache import PrefixCache, cache_layers, new_cache
from ..repetition import loops
from ..settings import Settings, parse_max_memory
from .base import Backend

__all__ = ["TransformersBackend", "resolve_device_map", "resolve_dtype"]

log = logging.getLogger(__name__)


def resolve_device_map(text: str) -> Any:
    """``auto`` (falls back to ``cpu`` without CUDA), ``cpu``, ``cuda:N`` or a JSON object."""
    import torch

    if text == "auto":
        return "auto" if torch.cuda.is_available() else "cpu"
    if text == "cpu" or text.startswith("cuda"):
        return text
    return json.loads(text)


def resolve_dtype(name: str, device_map: Any) -> str:
    """``auto``: bfloat16 on a GPU that supports it (else float16), float32 on the CPU."""
    import torch

    if name != "auto":
        return name
    if device_map == "cpu" or not torch.cuda.is_available():
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


class _StopWhenUnwanted:
    """A StoppingCriteria: rows of jobs whose client left or whose deadline passed are finished."""

    def __init__(self, jobs: Sequence[Job]):
        self.jobs = jobs
        self.stopped = False

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        flags = [j.should_stop() for j in self.jobs]
        if any(flags):
            self.stopped = True
        # Beam search checks its 2 * num_beams candidates per job, so derive the row count from the input.
        rows = max(1, input_ids.shape[0] // len(self.jobs))
        return torch.tensor(flags, device=input_ids.device).repeat_interleave(rows)


class _StopLooping:
    """A StoppingCriteria for greedy decoding: rows whose completion loops (repetition.py) are finished.

    Not used with beam search: there transformers finishes each candidate the criterion flags, as at
    EOS, which would change which beam wins compared with Defog's unguarded decoding.
    """

    def __init__(self, span: int):
        self.span = span
        self.width = 0  # prompt columns of the batch, set once the inputs are built
        self.looped: set[int] = set()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        flags = []
        for row, ids in enumerate(input_ids[:, self.width:].tolist()):
            hit = row not in self.looped and loops(ids, self.span)
            if hit:
                self.looped.add(row)
            flags.append(hit)
        return torch.tensor(flags, device=input_ids.device)


class TransformersBackend(Backend):
    """``AutoModelForCausalLM`` + ``BitsAndBytesConfig`` + accelerate device map, with a prefix KV cache."""

    name = "transformers"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.model: Any = None  # transformers' model and tokenizer, set by load()
        self.tokenizer: Any = None
        self._tok_lock = threading.Lock()  # fast tokenizers are not safe to share across threads
        self.prefix_cache = PrefixCache(settings.prefix_cache_bytes, settings.prefix_cache_min_tokens)
        self._info: dict[str, Any] = {}
        self.memory_estimate: dict[str, Any] | None = None
        self._grammars: GrammarCache | None = None  # made at the first request with a grammar

    # -- loading -------------------------------------------------------------
    def quantization_config(self, compute_dtype: Any) -> Any:
        from transformers import BitsAndBytesConfig

        q = self.settings.quantize
        if q == "nf4":
            return BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=compute_dtype,
                bnb_4bit_use_double_quant=True,
            )
        if q == "int8":
            return BitsAndBytesConfig(load_in_8bit=True)
        return None

    def load(self) -> None:
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        s = self.settings
        device_map = resolve_device_map(s.device_map)
        dtype_name = resolve_dtype(s.dtype, device_map)
        dtype = getattr(torch, dtype_name)
        max_memory = parse_max_memory(s.max_memory)
        trust = s.trust_remote_code
        model = s.model
        if model is None:  # settings refuse this before a backend is made; a backend made directly says so too
            raise ValueError("--model is required (a local directory or a hub id)")
        if model.startswith(("/", ".", "~")) and not Path(model).expanduser().is_dir():
            # Otherwise the hub client reports it as a malformed repository id.
            raise OSError(f"--model {model}: no such directory")
        config = AutoConfig.from_pretrained(model, trust_remote_code=trust)
        if s.check_memory:
            self.memory_estimate = check_fits(config, quantize=s.quantize, dtype=dtype_name, device_map=device_map,
                                              max_memory=max_memory, model_name=model,
                                              extra_bytes=self.prefix_cache.max_bytes)
        kwargs: dict[str, Any] = {"device_map": device_map, "trust_remote_code": trust}
        dtype_kw = "dtype" if "dtype" in inspect.signature(AutoModelForCausalLM.from_pretrained).parameters or \
            int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        kwargs[dtype_kw] = dtype
        if max_memory:
            kwargs["max_memory"] = max_memory
        qc = self.quantization_config(dtype)
        if qc is not None:
            kwargs["quantization_config"] = qc
        t0 = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust)
        self.model = AutoModelForCausalLM.from_pretrained(model, **kwargs).eval()
        log.info("loaded %s in %.1f s (%s, %s, device map %s)", s.model, time.monotonic() - t0, s.quantize,
                 dtype_name, device_map)
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token  # SQLCoder's reference inference pads with EOS
        tok.padding_side = "left"  # decoder-only batches are padded on the left
        self.eos_token_id = tok.eos_token_id
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        devices = sorted({str(d) for d in (getattr(self.model, "hf_device_map", None) or {}).values()}) or \
            [str(self.model.device)]
        devices = [f"cuda:{d}" if d.isdigit() else d for d in devices]
        self._info = {
            "device": ",".join(devices),
            "quantization": s.quantize,
            "dtype": dtype_name,
            "context_length": int(getattr(config, "max_position_embeddings", 0) or tok.model_max_length),
        }
        if self.memory_estimate:
            self._info["memory_estimate"] = self.memory_estimate

    @property
    def input_device(self) -> Any:
        return self.model.get_input_embeddings().weight.device

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def stats(self) -> dict[str, Any]:
        out = {"prefix_cache": self.prefix_cache.stats(), "memory": memory_stats()}
        if self._grammars is not None:
            out["grammar_cache"] = self._grammars.stats()
        return out

    def grammar_support(self) -> dict[str, Any]:
        try:
            import llguidance  # noqa: F401
        except ImportError:
            return {"supported": False, "reason": "the llguidance package is not installed"}
        return {"supported": True, "format": "lark", "library": "llguidance", "beam_search": True}

    def _matchers(self, jobs: Sequence[Job]) -> list[Any]:
        """A fresh matcher per job with a grammar (None for the others, and where it does not compile)."""
        if not any(j.request.grammar is not None and j.request.grammar.lark for j in jobs):
            return [None] * len(jobs)
        if self._grammars is None:
            with self._tok_lock:
                self._grammars = GrammarCache(self.tokenizer)
        grammars = self._grammars
        return [grammars.matcher(j.request.grammar.lark) if j.request.grammar is not None and j.request.grammar.lark
                else None for j in jobs]

    # -- tokens --------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        with self._tok_lock:
            enc = (self.tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True)["input_ids"]
                   if texts else [])
        return [len(ids) for ids in enc]

    def _encode(self, prompt: str) -> list[int]:
        with self._tok_lock:
            # Special-token text inside a prompt (a comment reading "<|im_end|>") stays text: the
            # prompt template has none of its own, so any there came from text another role wrote.
            ids: list[int] = self.tokenizer(prompt, add_special_tokens=True, split_special_tokens=True)["input_ids"]
            return ids

    # -- generation ----------------------------------------------------------
    def generate(self, jobs: Sequence[Job]) -> list[GenerationResult | DaemonError]:
        results: list[GenerationResult | DaemonError | None] = [None] * len(jobs)
        encoded: list[tuple[int, list[int]]] = []
        ctx = self._info["context_length"]
        for i, job in enumerate(jobs):
            ids = self._encode(job.request.prompt)
            if len(ids) >= ctx:
                results[i] = TooLarge(f"the prompt has {len(ids)} tokens; the model's context is {ctx}")
            else:
                encoded.append((i, ids))
        if encoded:
            run_jobs = [jobs[i] for i, _ in encoded]
            outs = self._generate([ids for _, ids in encoded], run_jobs)
            for (i, _), out in zip(encoded, outs):
                results[i] = out
        return results  # type: ignore[return-value]

    def _generate(self, prompts: list[list[int]], jobs: Sequence[Job]) -> list[GenerationResult]:
        import torch
        from transformers import StoppingCriteriaList

        req = jobs[0].request
        ctx = self._info["context_length"]
        longest = max(len(p) for p in prompts)
        max_new = max(1, min(req.max_new_tokens, ctx - longest))
        stop = _StopWhenUnwanted(jobs)
        gen_kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new,
            num_beams=req.num_beams,
            do_sample=False,
            num_return_sequences=1,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.eos_token_id,
            stopping_criteria=StoppingCriteriaList([stop]),
        )
        if req.num_beams > 1:
            gen_kwargs["early_stopping"] = False  # transformers' default, stated so reference behaviour is pinned
        guard = _StopLooping(self.settings.repetition_guard_tokens) \
            if req.num_beams == 1 and self.settings.repetition_guard_tokens else None
        if guard is not None:
            gen_kwargs["stopping_criteria"].append(guard)
        cached = [0] * len(prompts)
        matchers = self._matchers(jobs)
        processor: GrammarProcessor | None = None
        with torch.inference_mode():
            prepared = self._with_prefix_cache(prompts, req.num_beams) if self.prefix_cache.enabled else None
            if prepared is not None:
                input_ids, attention_mask, cache, reused = prepared
                gen_kwargs[self._cache_kw] = cache
                cached = [reused] * len(prompts)
            else:
                batch = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
                input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
            dev = self.input_device
            if any(m is not None for m in matchers):
                from transformers import LogitsProcessorList

                grammars = self._grammars
                assert grammars is not None
                processor = GrammarProcessor(matchers, input_ids.shape[1], grammars.n_vocab, grammars.blank_tokens())
                gen_kwargs["logits_processor"] = LogitsProcessorList([processor])
            if guard is not None:
                guard.width = input_ids.shape[1]
            out = self.model.generate(input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev),
                                      **gen_kwargs)
        width = input_ids.shape[1]
        results = []
        for n, (row, prompt, n_cached, job) in enumerate(zip(out.cpu().tolist(), prompts, cached, jobs)):
            completion = row[width:]
            finish = "length"
            if guard is not None and n in guard.looped:
                # Stopped by the guard; in a batch, padding (EOS) follows while the other rows go on.
                completion = completion[: len(completion) - _trailing(completion, self.eos_token_id)]
                finish = "repetition"
            elif self.eos_token_id in completion:
                # Also cuts the padding (EOS) that follows a sequence finished before the others.
                completion = completion[: completion.index(self.eos_token_id) + 1]
                finish = "eos"
            if stop.stopped and job.should_stop():
                finish = "stop"
            with self._tok_lock:
                text = self.tokenizer.decode(completion, skip_special_tokens=True)
            results.append(GenerationResult(text=text, finish_reason=finish, prompt_tokens=len(prompt),
                                            completion_tokens=len(completion), cached_tokens=n_cached,
                                            constrained=processor is not None and processor.constrained(n)))
        return results

    def _with_prefix_cache(self, prompts: list[list[int]], num_beams: int) -> tuple[Any, Any, Any, int] | None:
        """Inputs plus a KV cache of the prefix the batch's prompts share, reusing a cached one; None if too short.

        For one prompt the shared prefix is all but its last token (``generate``
        must feed at least one). The prefix's cache is stored for later prompts.
        Each prompt's remaining suffix follows the prefix after padding placed in
        the middle: the attention mask hides it and ``generate`` numbers positions
        from the mask, so every suffix continues right where the prefix ends. The
        batch-1 cache is repeated once per row (prompts x beams), as beam search expects.
        """
        import torch
        from transformers import DynamicCache

        shortest = min(len(p) for p in prompts) - 1
        first = torch.tensor(prompts[0], dtype=torch.long)
        n = shortest
        for other in prompts[1:]:
            diff = torch.nonzero(first[:n] != torch.tensor(other[:n], dtype=torch.long))
            n = n if len(diff) == 0 else int(diff[0])
        if n < self.prefix_cache.min_tokens:
            return None
        tokens = first[:n]
        reused, entry = self.prefix_cache.lookup(tokens, n)
        cache = new_cache(entry.layers, reused) if entry is not None else DynamicCache()
        if reused < n:
            # Prefill the rest of the prefix ourselves, so its cache can be stored.
            dev = self.input_device
            self.model(input_ids=tokens[reused:].unsqueeze(0).to(dev),
                       attention_mask=torch.ones(1, n, dtype=torch.long, device=dev),
                       position_ids=torch.arange(reused, n, device=dev).unsqueeze(0),
                       use_cache=True, **{self._cache_kw: cache})
            # generate() grows and reorders the cache by building new tensors, never in place,
            # so the stored tensors stay valid while the cache object moves on.
            self.prefix_cache.store(tokens, cache_layers(cache))
        rows = len(prompts) * num_beams
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        suffixes = [p[n:] for p in prompts]
        width = max(len(sfx) for sfx in suffixes)
        prefix = prompts[0][:n]
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([prefix + [pad] * (width - len(sfx)) + sfx for sfx in suffixes], dtype=torch.long)
        mask = torch.tensor([[1] * n + [0] * (width - len(sfx)) + [1] * len(sfx) for sfx in suffixes],
                            dtype=torch.long)
        return input_ids, mask, cache, reused


def _trailing(ids: list[int], token: int) -> int:
    """How many times ``token`` ends ``ids``."""
    n = 0
    while n < len(ids) and ids[-1 - n] == token:
        n += 1
    return n


def memory_stats() -> dict[str, Any]:
    """Memory per GPU (allocated, reserved, total bytes) and the process's resident set size."""
    import torch

    out: dict[str, Any] = {"rss_bytes": _rss_bytes()}
    if torch.cuda.is_available():
        gpus = {}
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            gpus[f"cuda:{i}"] = {
                "allocated_bytes": torch.cuda.memory_allocated(i),
                "reserved_bytes": torch.cuda.memory_reserved(i),
                "used_bytes": total - free,
                "total_bytes": total,
            }
        out["gpus"] = gpus
    return out


def _rss_bytes() -> int:
    return proc_bytes("/proc/self/status", "VmRSS") or 0
