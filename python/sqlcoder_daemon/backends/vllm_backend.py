"""An in-process vLLM engine for AWQ/GPTQ checkpoints on GPUs (extra: ``pip install 'sqlcoder-daemon[vllm]'``).

vLLM batches internally, so the scheduler's batches go to it as one call.
Cancellation of a running request is not possible with the offline ``LLM``
API; deadlines still apply when the batch returns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..errors import DaemonError, TooLarge
from ..jobs import GenerationResult, Job
from ..settings import Settings
from .base import Backend

__all__ = ["VLLMBackend", "import_vllm"]

log = logging.getLogger(__name__)

MISSING = ("the vllm backend needs the optional 'vllm' package, which is not installed: "
           "pip install 'sqlcoder-daemon[vllm]' (on a host with a CUDA GPU), or use --backend transformers")


def import_vllm() -> Any:
    """vLLM, or an ImportError that says how to get it."""
    try:
        import vllm
    except ImportError as e:
        raise ImportError(MISSING) from e
    return vllm


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.vllm = import_vllm()  # fail at construction: before any loading work
        self.llm: Any = None  # vLLM's engine and its tokenizer, set by load()
        self.tokenizer: Any = None
        self._info: dict[str, Any] = {}

    def load(self) -> None:
        import torch

        s = self.settings
        kwargs: dict[str, Any] = {"model": s.model, "tensor_parallel_size": max(1, torch.cuda.device_count()),
                                  "trust_remote_code": s.trust_remote_code}
        if s.dtype != "auto":
            kwargs["dtype"] = s.dtype
        # nf4 / int8 are bitsandbytes formats; vLLM reads AWQ/GPTQ from the checkpoint's own config.
        if s.quantize == "nf4":
            kwargs["quantization"] = "bitsandbytes"
        self.llm = self.vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        cfg = self.llm.llm_engine.model_config
        self._info = {"device": ",".join(f"cuda:{i}" for i in range(torch.cuda.device_count())),
                      "quantization": s.quantize, "dtype": str(cfg.dtype).replace("torch.", ""),
                      "context_length": cfg.max_model_len}

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self.tokenizer.encode(t, add_special_tokens=False, split_special_tokens=True)) for t in texts]

    def generate(self, jobs: Sequence[Job]) -> list[GenerationResult | DaemonError]:
        req = jobs[0].request
        ctx = self._info["context_length"]
        prompts = [j.request.prompt for j in jobs]
        ids = [self.tokenizer.encode(p, split_special_tokens=True) for p in prompts]  # special-token text stays text
        too_long = {i for i, t in enumerate(ids) if len(t) >= ctx}
        run = [i for i in range(len(jobs)) if i not in too_long]
        results: list[GenerationResult | DaemonError] = [
            TooLarge(f"the prompt has {len(ids[i])} tokens; the model's context is {ctx}") for i in range(len(jobs))]
        if not run:
            return results
        eos = self.tokenizer.eos_token_id
        if req.num_beams > 1:
            from vllm.sampling_params import BeamSearchParams

            outs = self.llm.beam_search([{"prompt": prompts[i]} for i in run],
                                        BeamSearchParams(beam_width=req.num_beams, max_tokens=req.max_new_tokens))
            for i, out in zip(run, outs):
                best = out.sequences[0]
                completion = best.tokens[len(ids[i]):]
                results[i] = self._result(completion, len(ids[i]), req.max_new_tokens, eos)
        else:
            params = self.vllm.SamplingParams(temperature=0.0, max_tokens=req.max_new_tokens)
            outs = self.llm.generate([prompts[i] for i in run], params, use_tqdm=False)
            for i, out in zip(run, outs):
                results[i] = self._result(list(out.outputs[0].token_ids), len(ids[i]), req.max_new_tokens, eos)
        return results

    def _result(self, completion: list[int], prompt_tokens: int, max_new: int, eos: int) -> GenerationResult:
        finish = "length"
        if eos in completion:
            completion = completion[: completion.index(eos) + 1]
            finish = "eos"
        elif len(completion) < max_new:
            finish = "eos"  # vLLM stops at EOS and drops it from token_ids
        text = self.tokenizer.decode(completion, skip_special_tokens=True)
        return GenerationResult(text, finish, prompt_tokens, len(completion))
