"""sqlcoder.config parsing: typed values, defaults only from the scripts' rows, clear errors for bad ones."""

import pytest

from helpers.sql_objects import setting_defaults
from sqlcoder import config
from sqlcoder.errors import ConfigError

DEFAULTS = setting_defaults()


def test_the_scripts_defaults_parse_into_typed_settings() -> None:
    settings = config.parse_settings(DEFAULTS)
    assert settings.socket_path == "/run/sqlcoder/sqlcoder.sock"
    assert settings.model_timeout_ms == 120000 and settings.model_timeout_s == 120.0
    assert settings.max_new_tokens is None and settings.guard_ask is True


def test_values_are_typed() -> None:
    settings = config.parse_settings({**DEFAULTS, "connect_timeout_ms": "500", "num_beams": "1",
                                      "socket_path": "/tmp/s.sock", "query_timeout_ms": "2500"})
    assert (settings.connect_timeout_ms, settings.num_beams, settings.socket_path) == (500, 1, "/tmp/s.sock")
    assert (settings.connect_timeout_s, settings.query_timeout_s) == (0.5, 2.5)


def test_a_missing_key_is_an_error_not_a_second_default() -> None:
    rows = dict(DEFAULTS)
    del rows["max_rows"]
    with pytest.raises(ConfigError) as err:
        config.parse_settings(rows)
    assert "max_rows" in err.value.message and "config_default" in err.value.hint


@pytest.mark.parametrize("key, value", [("socket_path", "relative.sock"), ("model_timeout_ms", "-1"),
                                        ("model_timeout_ms", "soon"), ("num_beams", "0"), ("template", "gpt")])
def test_bad_values_name_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse_settings({**DEFAULTS, key: value})
    assert key in err.value.message and err.value.sqlstate == "F0000"
    assert "UPDATE sqlcoder.config" in err.value.hint
