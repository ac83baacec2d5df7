"""The daemon's settings, declared once: ``--help``, the TOML config file and ``status`` all read this table.

Precedence: built-in default < config file (``--config``) < command-line flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
from typing import Any, Callable, Sequence

__all__ = ["SETTINGS", "Setting", "Settings", "SettingsError", "build_parser", "load_settings", "parse_max_memory"]


class SettingsError(ValueError):
    """A setting has a value the daemon cannot use (bad flag, bad config file)."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: its name (config key; flag is ``--name-with-dashes``), type, default and help."""

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    repeatable: bool = False
    secret: bool = False  # redacted in ``status`` and logs
    flag: bool = True  # False: config file only

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


def _bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _size(text: str) -> int:
    """Bytes from ``4MiB``, ``512KiB``, ``2GB`` or a plain integer."""
    t = str(text).strip()
    units = {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "b": 1}
    for suffix, mult in units.items():
        if t.lower().endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(t)


def parse_max_memory(text: str | dict | None) -> dict[int | str, str] | None:
    """``0=38GiB,1=38GiB,cpu=64GiB`` -> ``{0: "38GiB", 1: "38GiB", "cpu": "64GiB"}`` (accelerate's format)."""
    if text in (None, ""):
        return None
    items = text.items() if isinstance(text, dict) else (p.split("=", 1) for p in str(text).split(",") if p.strip())
    out: dict[int | str, str] = {}
    for key, value in items:
        key = str(key).strip()
        out[int(key) if key.isdigit() else key] = str(value).strip()
    return out


# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("model", str, None, "model to serve: a local directory or a Hugging Face hub id (llama_cpp: a .gguf file)"),
    Setting("backend", str, "transformers", "inference backend",
            choices=("transformers", "llama_cpp", "openai", "vllm")),
    Setting("socket", str, "/run/sqlcoder/sqlcoder.sock", "Unix socket path the database connects to"),
    Setting("socket_group", str, None, "group given to the socket (mode 0660), e.g. postgres"),
    Setting("allow_uid", int, [], "peer uid allowed to connect (repeatable); default: own uid and postgres",
            repeatable=True),
    Setting("allow_user", str, [], "user name allowed to connect (repeatable)", repeatable=True),
    Setting("max_connections", int, 512,
            "most connections open at once (socket and HTTP); more are answered 'busy' and closed"),
    Setting("idle_timeout_s", float, 30.0, "close a connection that takes longer than this to send a request"),
    Setting("quantize", str, "nf4", "weight quantization (bitsandbytes)", choices=("nf4", "int8", "none")),
    Setting("dtype", str, "auto", "compute dtype; auto: bfloat16 on GPU, float32 on CPU",
            choices=("auto", "bfloat16", "float16", "float32")),
    Setting("device_map", str, "auto", "accelerate device map: auto, cpu, or a JSON object"),
    Setting("max_memory", str, None, "per-device memory limits for accelerate, e.g. 0=38GiB,1=38GiB,cpu=64GiB"),
    Setting("cpu_threads", int, 0, "torch CPU threads (0: torch's default, one per core)"),
    Setting("max_new_tokens", int, 300, "default and upper bound of generated tokens per request"),
    Setting("num_beams", int, 4, "default beam count (1 = greedy)"),
    Setting("max_num_beams", int, 8, "largest num_beams a request may ask for"),
    Setting("max_request_bytes", _size, 4 * 1024**2, "longest request line accepted (bytes; 4MiB style allowed)"),
    Setting("max_queue", int, 64, "requests waiting beyond this answer 'busy'"),
    Setting("max_batch_size", int, 8, "most requests run together in one batched generate"),
    Setting("batch_wait_ms", float, 10.0,
            "while requests arrive together, how long to wait for as many as the last batch had (a lone client never waits)"),
    Setting("timeout_ms", int, 600_000, "default request deadline (queue time included)"),
    Setting("drain_timeout_s", float, 30.0, "on SIGTERM, how long in-flight requests may still run"),
    Setting("prefix_cache_bytes", _size, 2 * 1024**3, "LRU budget for prompt-prefix KV caches (0 disables)"),
    Setting("prefix_cache_min_tokens", int, 32, "shortest shared prefix worth reusing"),
    Setting("check_memory", _bool, True, "estimate memory before loading and refuse when it cannot fit"),
    Setting("llama_n_ctx", int, 4096,
            "llama_cpp backend: context window in tokens, allocated up front (0: the GGUF file's own)"),
    Setting("openai_url", str, None, "openai backend: base URL of an OpenAI-compatible server (…/v1)"),
    Setting("openai_api_key", str, None, "openai backend: API key (config file or flag, never SQL)", secret=True),
    Setting("openai_model", str, None, "openai backend: model name sent to the server (default: --model)"),
    Setting("openai_timeout_s", float, 600.0, "openai backend: HTTP timeout"),
    Setting("openai_listen", str, None, "serve an OpenAI-compatible completions API on this loopback host:port"),
    Setting("openai_listen_api_key", str, None, "bearer key the OpenAI-compatible listener requires",
            secret=True),
    Setting("openai_listen_insecure", _bool, False,
            "let the OpenAI-compatible listener run without an API key (any local user reaches the model)"),
    Setting("metrics_listen", str, None, "serve Prometheus /metrics and /status on this loopback host:port"),
    Setting("log_level", str, "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Setting("log_prompts", _bool, False, "include prompt text in the per-request log line"),
    Setting("trust_remote_code", _bool, False, "let transformers run code shipped with the model"),
)
# fmt: on

_BY_NAME = {s.name: s for s in SETTINGS}


class Settings(dict):
    """Resolved settings, readable as attributes: ``settings.max_new_tokens``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def public(self) -> dict[str, Any]:
        """Settings safe to show in ``status`` (secrets redacted)."""
        return {k: ("***" if _BY_NAME[k].secret and v else v) for k, v in self.items() if k in _BY_NAME}


def build_parser() -> argparse.ArgumentParser:
    """The command line, generated from :data:`SETTINGS`; unset flags stay absent so the config file can apply."""
    parser = argparse.ArgumentParser(
        prog="sqlcoder-daemon",
        description="Serve a SQLCoder model to PostgreSQL over a Unix socket (see docs/daemon.md).",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="TOML file with any of the settings below (flags win)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    for s in SETTINGS:
        if not s.flag:
            continue
        kwargs: dict[str, Any] = {"help": f"{s.help} (default: {s.default!r})", "dest": s.name}
        if s.type is _bool:
            kwargs["type"] = _bool
            kwargs["metavar"] = "BOOL"
        else:
            kwargs["type"] = s.type
        if s.choices:
            kwargs["choices"] = s.choices
        if s.repeatable:
            kwargs["action"] = "append"
        parser.add_argument(s.option, **kwargs)
    return parser


def _coerce(s: Setting, value: Any) -> Any:
    if value is None:
        return None
    if s.repeatable:
        values = value if isinstance(value, list) else [value]
        return [s.type(v) if not isinstance(v, type(s.default)) else v for v in values]
    if s.name in ("device_map", "max_memory") and isinstance(value, dict):
        return json.dumps(value) if s.name == "device_map" else ",".join(f"{k}={v}" for k, v in value.items())
    if s.type in (str,) or s.type is _size or s.type is _bool:
        value = s.type(value) if not (s.type is _bool and isinstance(value, bool)) else value
    else:
        value = s.type(value)
    if s.choices and value not in s.choices:
        raise SettingsError(f"{s.name}: {value!r} is not one of {', '.join(s.choices)}")
    return value


def load_settings(argv: Sequence[str] | None = None) -> Settings:
    """Resolve defaults, the ``--config`` file and flags into one :class:`Settings`."""
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {s.name: (list(s.default) if s.repeatable else s.default) for s in SETTINGS}
    config_path = args.pop("config", None)
    values["version"] = args.pop("version", False)
    if config_path:
        try:
            with open(config_path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SettingsError(f"cannot read config file {config_path}: {e}") from e
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in _BY_NAME:
                raise SettingsError(f"{config_path}: unknown setting {key!r}")
            try:
                values[name] = _coerce(_BY_NAME[name], value)
            except (TypeError, ValueError) as e:
                raise SettingsError(f"{config_path}: {key}: {e}") from e
    values.update(args)
    settings = Settings(values)
    settings["config"] = config_path
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if s.version:
        return
    if not s.model and s.backend != "openai":
        raise SettingsError("--model is required (a local directory or a hub id)")
    if s.backend == "openai" and not s.openai_url:
        raise SettingsError("--backend openai needs --openai-url")
    for name in ("max_new_tokens", "num_beams", "max_num_beams", "max_request_bytes", "max_queue", "max_batch_size",
                 "max_connections"):
        if s[name] < 1:
            raise SettingsError(f"--{name.replace('_', '-')} must be at least 1")
    if s.llama_n_ctx < 0:
        raise SettingsError("--llama-n-ctx must be 0 (the model's own) or a token count")
    if s.idle_timeout_s <= 0:
        raise SettingsError("--idle-timeout-s must be above 0")
    if s.openai_listen and not s.openai_listen_api_key and not s.openai_listen_insecure:
        raise SettingsError("--openai-listen needs --openai-listen-api-key (or, to let every local user reach "
                            "the model, --openai-listen-insecure true)")
    if s.num_beams > s.max_num_beams:
        raise SettingsError("--num-beams exceeds --max-num-beams")
    dm = s.device_map
    if dm not in ("auto", "cpu") and not str(dm).startswith("cuda"):
        try:
            if not isinstance(json.loads(dm), dict):
                raise ValueError
        except ValueError:
            raise SettingsError("--device-map must be auto, cpu, cuda[:N] or a JSON object") from None
    try:
        parse_max_memory(s.max_memory)
    except ValueError:
        raise SettingsError("--max-memory must look like 0=38GiB,1=38GiB,cpu=64GiB") from None
