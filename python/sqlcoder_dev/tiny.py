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
    "default_cache_dir",
    "load_pairs",
    "main",
    "read_manifest",
    "train_tiny_sqlcoder",
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


# --------------------------------------------------------------------------- trained models

# Bump when the training code changes in a way that changes the model it produces.
_FORMAT_VERSION = 1
_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_cache_dir() -> Path:
    """``$SQLCODER_CACHE``, else ``<repo>/.cache/tiny-models`` (else ``~/.cache/sqlcoder/tiny-models``)."""
    env = os.environ.get("SQLCODER_CACHE")
    if env:
        return Path(env)
    if (_REPO_ROOT / "pyproject.toml").is_file():
        return _REPO_ROOT / ".cache" / "tiny-models"
    return Path.home() / ".cache" / "sqlcoder" / "tiny-models"


def _versions() -> dict[str, str]:
    # importlib.metadata rather than importing torch: a cache hit must stay fast.
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "tokenizers")}


def _cache_key(pairs: Sequence[tuple[str, str]], config: TrainConfig, seed: int) -> str:
    blob = json.dumps(
        {
            "format": _FORMAT_VERSION,
            "pairs": [list(p) for p in pairs],
            "config": dataclasses.asdict(config),
            "seed": seed,
            "versions": _versions(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _check_pairs(pairs: Iterable[Sequence[str]]) -> list[tuple[str, str]]:
    checked = [(p, c) for p, c in pairs]
    if not checked:
        raise ValueError("train_tiny_sqlcoder needs at least one (prompt, completion) pair")
    seen: dict[str, str] = {}
    for prompt, completion in checked:
        if not isinstance(prompt, str) or not isinstance(completion, str) or not completion:
            raise ValueError("each pair must be (prompt: str, completion: non-empty str)")
        if seen.setdefault(prompt, completion) != completion:
            raise ValueError(f"the same prompt has two completions: {prompt[-80:]!r}")
    return checked


def read_manifest(model_dir: str | os.PathLike) -> dict:
    """The ``sqlcoder_tiny.json`` of a trained model: its pairs, seed, config and training figures."""
    return json.loads((Path(model_dir) / MANIFEST_NAME).read_text())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock, so parallel test workers train a given model once."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def train_tiny_sqlcoder(
    pairs: Sequence[tuple[str, str]],
    out_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    max_seconds: float = 120,
    seed: int = 0,
    config: TrainConfig = TrainConfig(),
) -> Path:
    """A tiny Llama that answers each prompt with exactly its completion; return its directory.

    The completion is checked with both greedy and beam search through
    ``model.generate``, the way the daemon decodes. Models are cached under
    ``cache_dir`` (see :func:`default_cache_dir`) by a hash of the pairs, the
    config, the seed and the library versions; with ``out_dir`` the cached
    model is copied there. Raises :class:`TrainingFailed` when some pair is not
    learnt within ``max_seconds`` of training.
    """
    checked = _check_pairs(pairs)
    key = _cache_key(checked, config, seed)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    model_dir = cache / key
    if not (model_dir / MANIFEST_NAME).is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with _locked(cache / f"{key}.lock"):
            if not (model_dir / MANIFEST_NAME).is_file():
                # Train into a scratch directory and rename it into place, so a
                # model directory that exists is always complete.
                scratch = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
                scratch.chmod(0o755)  # mkdtemp's 0700 would hide the model from a daemon run as another user
                try:
                    _train(checked, scratch, config=config, seed=seed, max_seconds=max_seconds, key=key)
                    shutil.rmtree(model_dir, ignore_errors=True)
                    scratch.rename(model_dir)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
    if out_dir is None:
        return model_dir
    out = Path(out_dir)
    shutil.copytree(model_dir, out, dirs_exist_ok=True)
    return out


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
                    f"and {config.max_steps} steps ({step} steps, loss {loss.item():.4f}, lowest completion-token probability "
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


# --------------------------------------------------------------------------- command line


def load_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Pairs from a JSON file holding a list of ``{"prompt": ..., "completion": ...}``."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{\"prompt\", \"completion\"}} objects")
    return [(item["prompt"], item["completion"]) for item in data]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sqlcoder_dev.tiny {random,train} ...``: build a tiny model, print its directory."""
    parser = argparse.ArgumentParser(prog="python -m sqlcoder_dev.tiny", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rnd = sub.add_parser("random", help="write a random-weight Llama and tokenizer")
    rnd.add_argument("out_dir", type=Path)
    rnd.add_argument("--seed", type=int, default=0)
    rnd.add_argument("--hidden-size", type=int, default=64)
    rnd.add_argument("--num-layers", type=int, default=2)
    rnd.add_argument("--context-length", type=int, default=4096)
    trn = sub.add_parser("train", help="train (or fetch from the cache) a model that knows some pairs")
    trn.add_argument("--pairs", type=Path, required=True, help='JSON list of {"prompt": ..., "completion": ...}')
    trn.add_argument("--out", type=Path, default=None, help="copy the model here (default: print its cache path)")
    trn.add_argument("--cache-dir", type=Path, default=None, help=f"default: {default_cache_dir()}")
    trn.add_argument("--max-seconds", type=float, default=120)
    trn.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    if args.command == "random":
        out = build_random_llama(
            args.out_dir, context_length=args.context_length, hidden_size=args.hidden_size,
            num_layers=args.num_layers, seed=args.seed,
        )
    else:
        try:
            out = train_tiny_sqlcoder(
                load_pairs(args.pairs), args.out, cache_dir=args.cache_dir,
                max_seconds=args.max_seconds, seed=args.seed,
            )
        except TrainingFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
