"""Trained tiny models cached by a hash of what made them, behind a file lock (parallel test workers)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .training import MANIFEST_NAME, TrainConfig, _train, _versions

# Bump when the training code changes in a way that changes the model it produces.
_FORMAT_VERSION = 1
_DEFAULT_CONFIG = TrainConfig()
_REPO_ROOT = Path(__file__).resolve().parents[3]


def default_cache_dir() -> Path:
    """``$SQLCODER_CACHE``, else ``<repo>/.cache/tiny-models`` (else ``~/.cache/sqlcoder/tiny-models``)."""
    env = os.environ.get("SQLCODER_CACHE")
    if env:
        return Path(env)
    if (_REPO_ROOT / "pyproject.toml").is_file():
        return _REPO_ROOT / ".cache" / "tiny-models"
    return Path.home() / ".cache" / "sqlcoder" / "tiny-models"


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
    config: TrainConfig = _DEFAULT_CONFIG,
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
