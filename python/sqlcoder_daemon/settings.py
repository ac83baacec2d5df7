"""The daemon's settings, declared once as the typed :class:`Settings`: ``--help``, the TOML config file
and ``status`` all read its fields.

Precedence: built-in default < config file (``--config``) < command-line flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
from collections.abc import Callable, Sequence
from typing import Any

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


def parse_max_memory(text: str | dict[str, Any] | None) -> dict[int | str, str] | None:
    """``0=38GiB,1=38GiB,cpu=64GiB`` -> ``{0: "38GiB", 1: "38GiB", "cpu": "64GiB"}`` (accelerate's format)."""
    if text in (None, ""):
        return None
    items = text.items() if isinstance(text, dict) else (p.split("=", 1) for p in str(text).split(",") if p.strip())
    out: dict[int | str, str] = {}
    for key, value in items:
        key = str(key).strip()
        out[int(key) if key.isdigit() else key] = str(value).strip()
    return out


def _opt(default: Any, help: str, *, parse: Callable[[str], Any] | None = None, choices: tuple[str, ...] | None = None,
         secret: bool = False) -> Any:
    """One setting's declaration: default, help and how its flag or config value is read (the field's
    annotation names the type; ``parse`` only where a plain constructor will not do)."""
    meta = {"help": help, "parse": parse, "choices": choices, "secret": secret}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# fmt: off
@dataclasses.dataclass
class Settings:
    """The daemon's settings, typed; each field is declared once here, with its default and help.

    ``--help``, the TOML config file and ``status`` all read these fields (:data:`SETTINGS`).
    """

    model: str | None = _opt(None,
                             "model to serve: a local directory or a Hugging Face hub id (llama_cpp: a .gguf file)")
    backend: str = _opt("transformers", "inference backend", choices=("transformers", "llama_cpp", "openai", "vllm"))
    socket: str = _opt("/run/sqlcoder/sqlcoder.sock", "Unix socket path the database connects to")
    socket_group: str | None = _opt(None, "group given to the socket (mode 0660), e.g. postgres")
    allow_uid: list[int] = _opt([], "peer uid allowed to connect (repeatable); default: own uid and postgres")
    allow_user: list[str] = _opt([], "user name allowed to connect (repeatable)")
    max_connections: int = _opt(512,
            "most connections open at once on the Unix socket; more are answered 'busy' and closed "
            "(each HTTP listener has its own cap)")
    idle_timeout_s: float = _opt(30.0,
            "each request must arrive whole (HTTP: headers and body) within this many seconds of the "
            "connection opening or the previous reply, however slowly it drips; else the connection is closed")
    quantize: str = _opt("nf4", "weight quantization (bitsandbytes)", choices=("nf4", "int8", "none"))
    dtype: str = _opt("auto", "compute dtype; auto: bfloat16 on GPU, float32 on CPU",
            choices=("auto", "bfloat16", "float16", "float32"))
    device_map: str = _opt("auto", "accelerate device map: auto, cpu, or a JSON object")
    max_memory: str | None = _opt(None, "per-device memory limits for accelerate, e.g. 0=38GiB,1=38GiB,cpu=64GiB")
    cpu_threads: int = _opt(0, "torch CPU threads (0: torch's default, one per core); llama_cpp: its threads")
    max_new_tokens: int = _opt(300, "default and upper bound of generated tokens per request")
    repetition_guard_tokens: int = _opt(48,
            "stop a completion once its last N tokens repeat one block of up to 64 tokens (finish reason "
            "'repetition'; never changes a token, so greedy output stays a prefix of the unguarded one; 0: off)")
    num_beams: int = _opt(4, "default beam count (1 = greedy)")
    max_num_beams: int = _opt(8, "largest num_beams a request may ask for")
    max_request_bytes: int = _opt(4 * 1024**2, "longest request line accepted (bytes; 4MiB style allowed)",
            parse=_size)
    max_grammar_bytes: int = _opt(1024**2, "longest grammar (each form) a generate request may carry (bytes)",
            parse=_size)
    openai_grammar: str = _opt("grammar",
            "openai backend: how the server takes a GBNF grammar: grammar (llama.cpp's server, llama-cpp-python's), "
            "guided_grammar (vLLM before 0.10), structured_outputs (vLLM 0.10 on), none (cannot)",
            choices=("grammar", "guided_grammar", "structured_outputs", "none"))
    max_queue: int = _opt(64, "requests waiting beyond this answer 'busy'")
    max_batch_size: int = _opt(8, "most requests run together in one batched generate")
    batch_wait_ms: float = _opt(10.0,
            "while requests arrive together, how long to wait for as many as the last batch had "
            "(a lone client never waits)")
    timeout_ms: int = _opt(600_000, "default request deadline (queue time included)")
    drain_timeout_s: float = _opt(30.0, "on SIGTERM, how long in-flight requests may still run")
    prefix_cache_bytes: int = _opt(2 * 1024**3, "LRU budget for prompt-prefix KV caches (0 disables)", parse=_size)
    prefix_cache_min_tokens: int = _opt(32, "shortest shared prefix worth reusing")
    check_memory: bool = _opt(True, "estimate memory before loading and refuse when it cannot fit")
    llama_n_ctx: int = _opt(4096,
            "llama_cpp backend: context window in tokens, allocated up front (0: the GGUF file's own)")
    openai_url: str | None = _opt(None, "openai backend: base URL of an OpenAI-compatible server (…/v1)")
    openai_api_key: str | None = _opt(None, "openai backend: API key (config file or flag, never SQL)", secret=True)
    openai_model: str | None = _opt(None, "openai backend: model name sent to the server (default: --model)")
    openai_timeout_s: float = _opt(600.0, "openai backend: HTTP timeout")
    openai_listen: str | None = _opt(None, "serve an OpenAI-compatible completions API on this loopback host:port")
    openai_listen_api_key: str | None = _opt(None, "bearer key the OpenAI-compatible listener requires", secret=True)
    openai_listen_insecure: bool = _opt(False,
            "let the OpenAI-compatible listener run without an API key (any local user reaches the model)")
    openai_listen_max_connections: int = _opt(64,
            "most connections open at once on the OpenAI-compatible listener; more get 503 and are closed")
    metrics_listen: str | None = _opt(None, "serve Prometheus /metrics and /status on this loopback host:port")
    metrics_listen_max_connections: int = _opt(16,
            "most connections open at once on the metrics listener; more get 503 and are closed")
    log_level: str = _opt("INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_prompts: bool = _opt(False, "include prompt text in the per-request log line")
    trust_remote_code: bool = _opt(False, "let transformers run code shipped with the model")
    # Not settings: how this run was asked for.
    version: bool = dataclasses.field(default=False, metadata={"run": True})
    config: str | None = dataclasses.field(default=None, metadata={"run": True})
# fmt: on

    def public(self) -> dict[str, Any]:
        """Settings safe to show in ``status`` (secrets redacted)."""
        return {s.name: ("***" if s.secret and getattr(self, s.name) else getattr(self, s.name)) for s in SETTINGS}

    def changed(self, other: Settings) -> dict[str, Any]:
        """The settings whose value in ``other`` differs from this one's: name -> ``other``'s value."""
        return {s.name: getattr(other, s.name) for s in SETTINGS if getattr(other, s.name) != getattr(self, s.name)}

    def update(self, values: dict[str, Any]) -> None:
        """Apply changed values in place (SIGHUP): the daemon's parts keep reading this one object."""
        for name, value in values.items():
            if name not in _BY_NAME:
                raise KeyError(name)
            setattr(self, name, value)


_SCALARS: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float, "bool": _bool}


def _declared(f: dataclasses.Field[Any]) -> Setting:
    annotation = str(f.type).replace(" | None", "")
    repeatable = annotation.startswith("list[")
    base = annotation[5:-1] if repeatable else annotation
    default = [] if repeatable else f.default
    return Setting(f.name, f.metadata["parse"] or _SCALARS[base], default, f.metadata["help"],
                   choices=f.metadata["choices"], repeatable=repeatable, secret=f.metadata["secret"])


#: The settings as a table (name, reader, default, help...), generated from :class:`Settings`' fields.
SETTINGS: tuple[Setting, ...] = tuple(_declared(f) for f in dataclasses.fields(Settings) if not f.metadata.get("run"))

_BY_NAME = {s.name: s for s in SETTINGS}


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
    settings = Settings(**values, config=config_path)
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
                 "max_connections", "openai_listen_max_connections", "metrics_listen_max_connections"):
        if getattr(s, name) < 1:
            raise SettingsError(f"--{name.replace('_', '-')} must be at least 1")
    if s.repetition_guard_tokens < 0:
        raise SettingsError("--repetition-guard-tokens must be 0 (off) or a token count")
    if s.idle_timeout_s <= 0:
        raise SettingsError("--idle-timeout-s must be above 0")
    if s.llama_n_ctx < 0:
        raise SettingsError("--llama-n-ctx must be 0 (the model's own) or a token count")
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
