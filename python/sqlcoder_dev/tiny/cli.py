"""``python -m sqlcoder_dev.tiny {random,train} ...``: build a tiny model, print its directory."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .cache import default_cache_dir, train_tiny_sqlcoder
from .model import build_random_llama
from .training import TrainingFailed


def load_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Pairs from a JSON file holding a list of ``{"prompt": ..., "completion": ...}``."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{\"prompt\", \"completion\"}} objects")
    return [(item["prompt"], item["completion"]) for item in data]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sqlcoder_dev.tiny {random,train} ...``: build a tiny model, print its directory."""
    parser = argparse.ArgumentParser(prog="python -m sqlcoder_dev.tiny",
                                     description="Tiny Llama models that stand in for SQLCoder in tests, the demo "
                                                 "and benchmarks.")
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
