"""Entrypoint of the daemon image: make sure the weights are there, then exec the daemon.

Operators either mount a model directory at ``/models`` or leave it empty and
name a hub repository (``SQLCODER_HUB_ID``, with ``HF_TOKEN`` or
``HF_TOKEN_FILE`` for a gated one). A download is done once, into the mounted
directory, and marked incomplete until it finishes, so a container killed in
the middle resumes it at the next start instead of serving half a model.

Environment:
    SQLCODER_MODEL_DIR       the weights directory (default /models)
    SQLCODER_HUB_ID          hub repository to fetch when the directory is empty
    SQLCODER_HUB_REVISION    branch, tag or commit to fetch (default: main; pin one)
    HF_TOKEN, HF_TOKEN_FILE  access token for gated or private repositories
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Literal, Sequence

__all__ = ["MARKER", "WeightsError", "model_state", "allow_patterns", "ensure_weights", "daemon_argv", "main"]

#: Present while a download is unfinished.
MARKER = ".sqlcoder-download-incomplete"

# What a transformers checkpoint needs; leaves out the GGUF and other-framework
# copies that model repositories often carry next to it (several GB each).
_COMMON = ["*.json", "tokenizer.model", "*.txt"]

State = Literal["empty", "partial", "complete", "foreign"]
Downloader = Callable[..., str]
Lister = Callable[[str, str | None, str | None], Sequence[str]]


class WeightsError(RuntimeError):
    """The weights directory cannot be used as it is; the message says what to do."""


def model_state(model_dir: Path) -> State:
    """Classify the weights directory: nothing in it, a download to resume, a model, or something else."""
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        return "empty"
    if (model_dir / MARKER).exists():
        return "partial"
    if (model_dir / "config.json").is_file():
        return "complete"
    return "foreign"


def allow_patterns(files: Sequence[str]) -> list[str]:
    """Files to fetch: safetensors where the repository has them, else PyTorch ``.bin`` shards."""
    if any(f.endswith(".safetensors") for f in files):
        return [*_COMMON, "*.safetensors"]
    return [*_COMMON, "*.bin"]


def _token(env: dict[str, str]) -> str | None:
    path = env.get("HF_TOKEN_FILE")
    if path:
        return Path(path).read_text().strip() or None
    return env.get("HF_TOKEN") or None


def _hub_list(repo_id: str, revision: str | None, token: str | None) -> Sequence[str]:
    from huggingface_hub import list_repo_files

    return list_repo_files(repo_id, revision=revision, token=token)


def _hub_download(**kw) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(**kw)


def ensure_weights(model_dir: Path, env: dict[str, str], *, required: bool,
                   download: Downloader = _hub_download, list_files: Lister = _hub_list) -> State:
    """Download the hub snapshot into an empty (or half-filled) ``model_dir``; return the state found.

    ``required`` says the daemon was told to load ``model_dir``: then an empty
    directory with no hub repository named is an error rather than a no-op.
    """
    state = model_state(model_dir)
    hub_id = env.get("SQLCODER_HUB_ID", "").strip()
    if state == "complete":
        return state
    if state == "foreign":
        if required:
            raise WeightsError(f"{model_dir} is not empty but has no config.json: mount a transformers "
                               "model directory there, or an empty volume to download into")
        return state
    if not hub_id:
        if state == "partial" or required:
            raise WeightsError(f"no model in {model_dir}: mount the weights there, or set SQLCODER_HUB_ID "
                               "(and HF_TOKEN for a gated model) to download them at start")
        return state
    revision = env.get("SQLCODER_HUB_REVISION") or None
    token = _token(env)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / MARKER).write_text(f"{hub_id}@{revision or 'main'}\n")
    print(f"sqlcoder: downloading {hub_id} ({revision or 'main'}) into {model_dir}", file=sys.stderr, flush=True)
    download(repo_id=hub_id, revision=revision, token=token, local_dir=str(model_dir),
             allow_patterns=allow_patterns(list_files(hub_id, revision, token)))
    (model_dir / MARKER).unlink()
    print(f"sqlcoder: {hub_id} is in {model_dir}", file=sys.stderr, flush=True)
    return state


def _model_arg(argv: Sequence[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--model" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--model="):
            return a.split("=", 1)[1]
    return None


def daemon_argv(argv: Sequence[str]) -> list[str]:
    """The command line to exec: ``sqlcoder-daemon`` with the container's arguments."""
    return ["sqlcoder-daemon", *argv]


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    """Check or fetch the weights, then replace this process with the daemon."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ if env is None else env)
    model_dir = Path(env.get("SQLCODER_MODEL_DIR", "/models"))
    model = _model_arg(argv)
    required = model is not None and Path(model) == model_dir
    try:
        ensure_weights(model_dir, env, required=required)
    except WeightsError as e:
        print(f"sqlcoder: {e}", file=sys.stderr)
        return 78  # EX_CONFIG: restarting will not help until the operator acts
    cmd = daemon_argv(argv)
    os.execvp(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
