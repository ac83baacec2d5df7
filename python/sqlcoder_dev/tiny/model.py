"""Random-weight Llama models (noise out, real loading path) and the helpers a trained one shares."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .tokenizer import BOS_ID, DEFAULT_CORPUS, EOS_ID, build_tokenizer


def _llama_config(vocab_size: int, *, hidden_size: int, intermediate_size: int, num_layers: int,
                  num_heads: int, num_kv_heads: int, context_length: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,  # grouped-query attention, like the 70B model
        max_position_embeddings=context_length,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        tie_word_embeddings=False,
    )


def _generation_config():
    from transformers import GenerationConfig

    # Llama has no pad token; SQLCoder's reference inference pads with EOS.
    return GenerationConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=EOS_ID)


def _save(model, tokenizer, out_dir: Path) -> None:
    model.generation_config = _generation_config()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # save_pretrained writes the weights 0600; the daemon may run as another user.
    for path in out_dir.iterdir():
        if path.is_file():
            path.chmod(0o644)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch without disturbing the caller's random state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_random_llama(
    out_dir: str | os.PathLike,
    *,
    context_length: int = 4096,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    corpus: list[str] | None = None,
) -> Path:
    """Write a random-weight Llama model and its tokenizer to ``out_dir``; return the path.

    Both load with ``from_pretrained`` (nf4 quantization included), so the
    daemon's real loading path runs without the real weights.
    """
    import torch
    from transformers import LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus if corpus is not None else DEFAULT_CORPUS, 512, context_length)
    config = _llama_config(
        len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_layers=num_layers,
        num_heads=4,
        num_kv_heads=2,
        context_length=context_length,
    )
    with _seeded(seed):
        model = LlamaForCausalLM(config).to(torch.float32).eval()
    _save(model, tokenizer, out)
    return out
