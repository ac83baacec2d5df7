"""Tiny Llama models that stand in for SQLCoder in tests, the demo and benchmarks.

The real model cannot be downloaded here, so the tooling builds its own:

* :func:`build_random_llama` writes a random-weight ``LlamaForCausalLM`` and a
  byte-level BPE tokenizer in a few hundred milliseconds. Its output is noise,
  but it loads through the same ``from_pretrained`` path (nf4 included) as the
  real 70B model, so it exercises the daemon's plumbing.
* :func:`train_tiny_sqlcoder` trains such a model until it answers a handful of
  SQLCoder prompts with exactly the expected completion, under both greedy and
  beam search, and caches the result: tests and the demo get a model whose
  answers they can assert.

Run ``python -m sqlcoder_dev.tiny --help`` for the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

__all__ = [
    "DEFAULT_CORPUS",
    "MANIFEST_NAME",
    "TrainConfig",
    "TrainingFailed",
    "build_random_llama",
    "build_tokenizer",
]

log = logging.getLogger(__name__)

#: File written beside a trained model, listing the prompt/completion pairs it knows.
MANIFEST_NAME = "sqlcoder_tiny.json"

# Token ids fixed by the order of the special tokens given to the BPE trainer,
# matching Llama's: <unk> = 0, <s> = 1, </s> = 2.
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2

#: Generic SQL and English text for tokenizers of random models.
DEFAULT_CORPUS: tuple[str, ...] = (
    "### Task\nGenerate a SQL query to answer [QUESTION]{question}[/QUESTION]\n\n"
    "### Instructions\n- If you cannot answer the question with the available database schema, "
    "return 'I do not know'\n- Remember that revenue is price multiplied by quantity\n\n"
    "### Database Schema\nThe query will run on a database with the following schema:\n",
    "### Answer\nGiven the database schema, here is the SQL query that answers "
    "[QUESTION]{question}[/QUESTION]\n[SQL]\n",
    "CREATE TABLE customers (\n  id integer PRIMARY KEY,\n  name text NOT NULL,\n"
    "  email text UNIQUE,\n  created_at timestamp with time zone DEFAULT now()\n);\n",
    "CREATE TABLE orders (\n  id bigserial PRIMARY KEY,\n  customer_id integer REFERENCES customers(id),\n"
    "  total numeric(12,2),\n  status varchar(20) CHECK (status IN ('open', 'paid', 'shipped')),\n"
    "  ordered_on date\n);\n",
    "CREATE TABLE products (id int PRIMARY KEY, name text, price numeric, category text);\n"
    "CREATE TABLE order_items (order_id bigint, product_id int, quantity int);\n",
    " SELECT count(*) FROM orders;\n[/SQL]",
    " SELECT c.name, sum(o.total) AS revenue FROM customers c JOIN orders o ON o.customer_id = c.id "
    "GROUP BY c.name ORDER BY revenue DESC LIMIT 10;\n[/SQL]",
    " SELECT p.category, avg(p.price) FROM products p WHERE p.price > 100 GROUP BY 1 HAVING count(*) >= 2;\n[/SQL]",
    " SELECT DISTINCT status FROM orders WHERE ordered_on BETWEEN '2024-01-01' AND '2024-12-31';\n[/SQL]",
    "SELECT o.id, COALESCE(sum(i.quantity), 0) FROM orders AS o LEFT JOIN order_items AS i "
    "ON i.order_id = o.id GROUP BY o.id;",
    "How many orders were placed last month? Which customers spent the most money this year? "
    "What is the average price of the products in each category? List the five newest customers.",
    "The quick brown fox jumps over the lazy dog. PostgreSQL is a powerful, open source "
    "object-relational database system with over 35 years of active development.",
    "Questions in plain English become SQL queries; the extension checks every query before it runs.",
)


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
    warmup_steps: int = 10
    #: Verify with generate() once every completion token is predicted with at least this probability.
    min_target_prob: float = 0.9
    #: max_new_tokens used when verifying: the daemon's default, since beam search can depend on it.
    verify_max_new_tokens: int = 300
    verify_num_beams: int = 4


class TrainingFailed(RuntimeError):
    """The tiny model did not learn every pair within the time allowed."""


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer(corpus: Iterable[str], vocab_size: int, context_length: int):
    """A Llama-like byte-level BPE tokenizer trained on ``corpus``.

    Byte-level BPE makes every string round-trip exactly through encode/decode,
    which exact-match tests rely on; the post-processor adds ``<s>`` like Llama's.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [UNK_ID, BOS_ID, EOS_ID]
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        # Decoding must give back the exact text: no " ," -> "," clean-up.
        clean_up_tokenization_spaces=False,
        model_max_length=context_length,
    )


# --------------------------------------------------------------------------- model


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
