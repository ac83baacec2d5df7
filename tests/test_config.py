"""sqlcoder.config parsing: typed values, defaults for missing rows, clear errors for bad ones."""

import pytest

from sqlcoder import config
from sqlcoder.errors import ConfigError


def test_defaults_when_rows_are_missing() -> None:
    settings = config.parse_settings({})
    assert settings.socket_path == "/run/sqlcoder/sqlcoder.sock"
    assert settings.model_timeout_ms == 120000
    assert settings.max_new_tokens is None


def test_values_are_typed() -> None:
    settings = config.parse_settings({"connect_timeout_ms": "500", "num_beams": "1", "socket_path": "/tmp/s.sock"})
    assert (settings.connect_timeout_ms, settings.num_beams, settings.socket_path) == (500, 1, "/tmp/s.sock")


@pytest.mark.parametrize("key, value", [("socket_path", "relative.sock"), ("model_timeout_ms", "-1"),
                                        ("model_timeout_ms", "soon"), ("num_beams", "0")])
def test_bad_values_name_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse_settings({key: value})
    assert key in err.value.message and err.value.sqlstate == "F0000"
    assert "UPDATE sqlcoder.config" in err.value.hint
