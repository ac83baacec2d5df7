"""The training loop: a tiny Llama trained until it answers each prompt with exactly its completion."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from .model import _generation_config, _llama_config, _save, _seeded
from .tokenizer import DEFAULT_CORPUS, EOS_ID, build_tokenizer

log = logging.getLogger("sqlcoder_dev.tiny")

#: File written beside a trained model, listing the prompt/completion pairs it knows.
MANIFEST_NAME = "sqlcoder_tiny.json"


def _versions() -> dict[str, str]:
    # importlib.metadata rather than importing torch: a cache hit must stay fast.
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "tokenizers")}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of a trained tiny model; every field is part of the cache key."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    context_length: int = 4096
    learning_rate: float = 3e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 10
    #: Give up after this many optimizer steps (a limit that, unlike max_seconds, does not depend on the machine).
    max_steps: int = 3000
    #: torch threads while training. One thread gives the same weights whatever the core count, and on a
    #: busy machine OpenMP's spinning threads made two threads five times slower than one (measured).
    num_threads: int = 1
    #: Verify with generate() once every completion token is predicted with at least this probability.
    min_target_prob: float = 0.9
    #: max_new_tokens used when verifying: the daemon's default, since beam search can depend on it.
    verify_max_new_tokens: int = 300
    verify_num_beams: int = 4


class TrainingFailed(RuntimeError):
    """The tiny model did not learn every pair within the time allowed."""


def _encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids with BOS, completion ids + EOS), tokenized the way the daemon tokenizes."""
    return [
        (tokenizer(p).input_ids, tokenizer(c, add_special_tokens=False).input_ids + [EOS_ID])
        for p, c in pairs
    ]


def _batch(encoded: Sequence[tuple[list[int], list[int]]]):
    """Right-padded input ids, attention mask and labels (-100 on prompt and padding)."""
    import torch

    width = max(len(p) + len(c) for p, c in encoded)
    ids = torch.full((len(encoded), width), EOS_ID, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, (p, c) in enumerate(encoded):
        n = len(p) + len(c)
        ids[row, :n] = torch.tensor(p + c)
        mask[row, :n] = 1
        labels[row, len(p):n] = torch.tensor(c)
    return ids, mask, labels


def _generate_text(model, tokenizer, prompt_ids: list[int], num_beams: int, max_new_tokens: int) -> str:
    import torch

    ids = torch.tensor([prompt_ids])
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        do_sample=False,
        pad_token_id=EOS_ID,
        eos_token_id=EOS_ID,
    )
    new = out[0, ids.shape[1]:]
    if len(new) == 0 or new[-1].item() != EOS_ID:
        return "<no EOS> " + tokenizer.decode(new, skip_special_tokens=True)
    return tokenizer.decode(new, skip_special_tokens=True)


def _failures(model, tokenizer, pairs, encoded, config: TrainConfig) -> list[str]:
    """How each pair's greedy and beam outputs differ from its completion (empty: all exact)."""
    import torch

    model.eval()
    problems = []
    with torch.no_grad():
        for (prompt, completion), (prompt_ids, _) in zip(pairs, encoded):
            for beams in (1, config.verify_num_beams):
                text = _generate_text(model, tokenizer, prompt_ids, beams, config.verify_max_new_tokens)
                if text != completion:
                    problems.append(
                        f"num_beams={beams}: prompt ending {prompt[-60:]!r} gave {text!r}, want {completion!r}"
                    )
    model.train()
    return problems


def _train(pairs, out_dir: Path, *, config: TrainConfig, seed: int, max_seconds: float, key: str) -> None:
    """Train until every pair decodes exactly; save model, tokenizer and manifest into ``out_dir``."""
    import torch
    from transformers import LlamaForCausalLM

    started = time.monotonic()
    tokenizer = build_tokenizer(
        [t for pair in pairs for t in pair] + list(DEFAULT_CORPUS), config.vocab_size, config.context_length
    )
    encoded = _encode_pairs(tokenizer, pairs)
    longest = max(len(p) + len(c) for p, c in encoded)
    if longest + config.verify_max_new_tokens > config.context_length:
        raise ValueError(f"a prompt of {longest} tokens does not fit context_length={config.context_length}")
    ids, mask, labels = _batch(encoded)
    target = labels[:, 1:]
    scored = target != -100

    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(config.num_threads)
    try:
        with _seeded(seed):
            model = LlamaForCausalLM(_llama_config(
                len(tokenizer),
                hidden_size=config.hidden_size,
                intermediate_size=config.intermediate_size,
                num_layers=config.num_layers,
                num_heads=config.num_heads,
                num_kv_heads=config.num_kv_heads,
                context_length=config.context_length,
            )).to(torch.float32)
        model.generation_config = _generation_config()
        model.train()
        opt = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, betas=config.adam_betas, weight_decay=0.0
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / config.warmup_steps))
        step, checks, next_check, problems = 0, 0, 0, ["not trained yet"]
        while True:
            # The language-model head only where a completion token is predicted:
            # prompt positions carry no loss, and skipping them saves a third of a step.
            hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1][scored]
            logp = torch.log_softmax(model.lm_head(hidden).float(), dim=-1)
            target_logp = logp.gather(-1, target[scored].unsqueeze(-1)).squeeze(-1)
            loss = -target_logp.mean()
            min_prob = target_logp.min().exp().item()
            if step % 50 == 0:
                log.info("step %d: loss %.4f, min p %.3f", step, loss.item(), min_prob)
            if min_prob >= config.min_target_prob and step >= next_check:
                checks += 1
                # A failed check costs up to verify_max_new_tokens beam steps per pair: back off.
                next_check = step + 10 * checks
                problems = _failures(model, tokenizer, pairs, encoded, config)
                log.info("step %d: loss %.4f, min p %.3f, %d outputs wrong%s", step, loss.item(), min_prob,
                         len(problems), f", e.g. {problems[0]}" if problems else "")
                if not problems:
                    break
            if time.monotonic() - started > max_seconds or step >= config.max_steps:
                raise TrainingFailed(
                    f"the tiny model did not learn all {len(pairs)} pairs within {max_seconds:.0f} s "
                    f"and {config.max_steps} steps ({step} steps, loss {loss.item():.4f}, "
                    f"lowest completion-token probability "
                    f"{min_prob:.3f}); raise max_seconds or use fewer/shorter pairs. "
                    + ("Wrong outputs: " + "; ".join(problems[:4]) if checks else "")
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)

    model.eval()
    _save(model, tokenizer, out_dir)
    manifest = {
        "description": "A tiny Llama trained to answer these SQLCoder prompts exactly; it knows nothing else.",
        "pairs": [{"prompt": p, "completion": c} for p, c in pairs],
        "seed": seed,
        "config": dataclasses.asdict(config),
        "cache_key": key,
        "versions": _versions(),
        "training": {"steps": step, "verifications": checks, "seconds": round(time.monotonic() - started, 2)},
    }
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
