"""Config: defaults, file, env overrides, and errors that name the key."""

from pathlib import Path

import pytest

from server.config import Config, ConfigError, as_dict, default_config_path, env_names, load_config


def test_config_yaml_lists_every_default() -> None:
    import yaml

    on_disk = yaml.safe_load(default_config_path().read_text())
    assert on_disk == as_dict(Config()), "config.yaml must list every setting with the code's default"


def test_env_overrides_by_dotted_path() -> None:
    cfg = load_config(environ={"SEGUE_HTTP_PORT": "9123", "SEGUE_DATA_DIR": "/tmp/x", "SEGUE_REDIS_URL": "redis://h:1/0"})
    assert cfg.http.port == 9123
    assert cfg.data_dir == "/tmp/x"
    assert cfg.redis.url == "redis://h:1/0"


def test_env_text_is_verbatim() -> None:
    cfg = load_config(environ={"SEGUE_REDIS_KEY_PREFIX": "tenant-a:", "SEGUE_AUTH_SECRET": "12345"})
    assert cfg.redis.key_prefix == "tenant-a:"
    assert cfg.auth.secret == "12345"


def test_env_lists_are_yaml() -> None:
    cfg = load_config(environ={"SEGUE_MEDIA_ICE_SERVERS": '[{urls: ["stun:127.0.0.1:3478"]}]'})
    assert cfg.media.ice_servers[0].urls == ["stun:127.0.0.1:3478"]


def test_every_setting_has_an_env_name() -> None:
    names = env_names()
    assert names["http.port"] == "SEGUE_HTTP_PORT"
    assert names["media.turn.secret"] == "SEGUE_MEDIA_TURN_SECRET"
    assert len(set(names.values())) == len(names), "two settings map to one variable"


@pytest.mark.parametrize(
    ("environ", "overrides", "names"),
    [
        ({"SEGUE_HTTP_PORT": "eighty"}, {}, "http.port"),
        ({}, {"http.colour": "blue"}, "http.colour"),
        ({"SEGUE_NOPE": "1"}, {}, "SEGUE_NOPE"),
        ({}, {"log.level": "loud"}, "log.level"),
        ({}, {"demo.enabled": "maybe"}, "demo.enabled"),
        ({}, {"routing.default_queue": "nowhere"}, "routing.default_queue"),
    ],
)
def test_bad_config_names_the_key(environ: dict, overrides: dict, names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load_config(environ=environ, overrides=overrides)


def test_bad_yaml_file(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("http:\n  port: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})
    bad.write_text("http:\n  port: 80\n  hots: x\n")
    with pytest.raises(ConfigError, match="http.hots"):
        load_config(bad, environ={})
