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

One module per concern: :mod:`.tokenizer`, :mod:`.model` (random weights), :mod:`.training`
(the loop), :mod:`.cache` (cache and file lock), :mod:`.cli`. Run
``python -m sqlcoder_dev.tiny --help`` for the command line.
"""

from .cache import default_cache_dir, read_manifest, train_tiny_sqlcoder
from .cli import load_pairs, main
from .model import build_random_llama
from .tokenizer import DEFAULT_CORPUS, build_tokenizer
from .training import MANIFEST_NAME, TrainConfig, TrainingFailed

__all__ = [
    "DEFAULT_CORPUS",
    "MANIFEST_NAME",
    "TrainConfig",
    "TrainingFailed",
    "build_random_llama",
    "build_tokenizer",
    "default_cache_dir",
    "load_pairs",
    "main",
    "read_manifest",
    "train_tiny_sqlcoder",
]
