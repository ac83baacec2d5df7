"""Settings declared once: flags, the TOML config file, --help and status all agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlcoder_daemon.cli import main
from sqlcoder_daemon.settings import SETTINGS, SettingsError, build_parser, load_settings, parse_max_memory


def test_defaults_match_the_reference_inference() -> None:
    s = load_settings(["--model", "m"])
    assert (s.quantize, s.num_beams, s.max_new_tokens, s.socket) == ("nf4", 4, 300, "/run/sqlcoder/sqlcoder.sock")
    assert s.max_request_bytes == 4 * 1024 * 1024 and s.allow_uid == [] and s.device_map == "auto"


def test_help_and_operator_docs_list_every_setting() -> None:
    text = build_parser().format_help()
    docs = (Path(__file__).resolve().parents[2] / "docs" / "daemon.md").read_text()
    for setting in SETTINGS:
        assert setting.option in text
        assert f"| `{setting.option}` | `{setting.name}` |" in docs, f"docs/daemon.md lacks {setting.option}"


def test_config_file_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "daemon.toml"
    cfg.write_text('model = "/models/x"\nnum_beams = 2\nmax-request-bytes = "1MiB"\nallow_user = ["root"]\n'
                   'device_map = { "" = "cpu" }\nopenai_api_key = "sk-secret"\n')
    s = load_settings(["--config", str(cfg), "--num-beams", "3", "--allow-uid", "5", "--allow-uid", "6"])
    assert s.model == "/models/x" and s.num_beams == 3 and s.max_request_bytes == 1 << 20
    assert s.allow_user == ["root"] and s.allow_uid == [5, 6] and s.device_map == '{"": "cpu"}'
    assert s.public()["openai_api_key"] == "***" and s.openai_api_key == "sk-secret"


@pytest.mark.parametrize("content, message", [
    ('modle = "x"\n', "unknown setting"),
    ('model = "x"\nquantize = "fp8"\n', "not one of"),
    ('model = "x"\nnum_beams = "many"\n', "num_beams"),
    ("model = \n", "cannot read"),
])
def test_bad_config_files_are_named(tmp_path: Path, content: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(content)
    with pytest.raises(SettingsError, match=message):
        load_settings(["--config", str(cfg)])


@pytest.mark.parametrize("argv, message", [
    ([], "--model is required"),
    (["--model", "m", "--num-beams", "9"], "max-num-beams"),
    (["--model", "m", "--device-map", "gpu please"], "device-map"),
    (["--backend", "openai"], "openai-url"),
    (["--model", "m", "--max-memory", "0=1GiB,bad"], "max-memory"),
])
def test_invalid_combinations(argv: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(argv)


def test_cli_exit_status_for_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--num-beams", "0", "--model", "m"]) == 2
    assert "num-beams" in capsys.readouterr().err


def test_max_memory_format() -> None:
    assert parse_max_memory("0=38GiB, 1=38GiB,cpu=64GiB") == {0: "38GiB", 1: "38GiB", "cpu": "64GiB"}
    assert parse_max_memory(None) is None


def test_missing_model_directory_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "/nonexistent/sqlcoder", "--socket", "/nonexistent/x.sock"]) == 1
    assert "--model /nonexistent/sqlcoder: no such directory" in capsys.readouterr().err


def test_settings_are_one_typed_object() -> None:
    """Each setting is a typed field of Settings; the table that --help, the config file and status read is
    generated from those fields, and no caller's local default can contradict the declared one."""
    import dataclasses
    import typing

    from sqlcoder_daemon.settings import Settings

    s = load_settings(["--model", "m", "--prefix-cache-bytes", "1MiB"])
    assert isinstance(s, Settings) and not isinstance(s, dict)
    assert [x.name for x in SETTINGS] == [f.name for f in dataclasses.fields(Settings) if f.name in s.public()]
    hints = typing.get_type_hints(Settings)
    for x in SETTINGS:
        value = getattr(s, x.name)
        assert value is None or isinstance(value, typing.get_origin(hints[x.name]) or hints[x.name]) or \
            isinstance(value, typing.get_args(hints[x.name])), (x.name, value)
    assert s.prefix_cache_bytes == 1 << 20
    assert load_settings(["--model", "m"]).prefix_cache_bytes == 2 * 1024**3
    # Settings are read as attributes only: no get(name, default) whose local default could differ.
    assert not hasattr(s, "get")
    with pytest.raises(AttributeError):
        _ = s.prefix_cache_size  # a misspelt name fails loudly
