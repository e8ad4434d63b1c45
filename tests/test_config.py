"""models/settings/: TOML file → typed settings, environment overrides, one-line errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from models.settings.load import ConfigError, load_settings, resolve_config_path

KEY = "k" * 20


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path=None, environ=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=environ or {})
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- defaults and files


def test_no_file_gives_the_embedded_default():
    settings = load_settings(None, environ={})
    assert settings.database.url == "sqlite+aiosqlite:///memberbot.db"
    assert settings.sms.provider == "console"
    assert settings.api.keys == []
    assert settings.server.max_body_bytes == 64 * 1024
    assert settings.brand.timezone == "Asia/Shanghai"
    assert settings.tiers.entry.code == "points"


def test_toml_file_becomes_settings(tmp_path):
    path = write(
        tmp_path,
        f"""
[server]
port = 9000
public_url = "https://bot.example.com/"

[database]
url = "postgresql+asyncpg://u@db/memberbot"

[brand]
name = "品牌"
timezone = "Europe/Paris"
locale = "en"

[sms]
provider = "twilio"
[sms.twilio]
auth_token = "file-token"

[api]
keys = ["{KEY}"]

[points]
rate = "2"
[points.expiry]
policy = "calendar_year"
""",
    )
    settings = load_settings(path, environ={})
    assert settings.server.port == 9000
    assert settings.server.public_url == "https://bot.example.com"
    assert settings.database.url.startswith("postgresql+asyncpg://")
    assert settings.brand.name == "品牌"
    assert str(settings.brand.tz) == "Europe/Paris"
    assert settings.brand.locale == "en"
    assert settings.sms.provider == "twilio"
    assert settings.sms.twilio.auth_token == "file-token"
    assert settings.api.keys == [KEY]
    assert settings.points.rate == Decimal("2")
    assert settings.points.expiry.policy == "calendar_year"
    assert settings.loyalty.points.rate == Decimal("2")


def test_missing_file(tmp_path):
    message = load_error(tmp_path / "nope.toml")
    assert "file not found" in message and "nope.toml" in message


def test_bad_toml(tmp_path):
    message = load_error(write(tmp_path, "[server\nport = 1\n"))
    assert "not valid TOML" in message


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes(b'[brand]\nname = "\xff\xfe"\n')
    assert "not valid TOML" in load_error(path)


# ------------------------------------------------------------- unknown keys and bad values


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nhots = 'x'\n", "server.hots"),
        ("[sever]\nhost = 'x'\n", "sever"),
        ("[sms.twilio]\nauth_tokn = 'x'\n", "sms.twilio.auth_tokn"),
        ("[points.expiry]\npolicy = 'never'\nmonth = 3\n", "points.expiry.month"),
    ],
)
def test_unknown_key_names_the_key(tmp_path, text, key):
    message = load_error(write(tmp_path, text))
    assert f"unknown key '{key}'" in message
    assert "config.toml" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nport = 'abc'\n", "server.port"),
        ("[server]\nport = 70000\n", "server.port"),
        ("[brand]\ntimezone = 'Mars/Olympus'\n", "brand.timezone"),
        ("[brand]\nlocale = 'fr'\n", "brand.locale"),
        ("[database]\nurl = 'mysql://x'\n", "database.url"),
        ("[api]\nkeys = ['short']\n", "api.keys"),
        ("[messaging]\nsend_window = '9-21'\n", "messaging.send_window"),
        ("[scheduler]\nplan_at = '25:00'\n", "scheduler.plan_at"),
        ("[wechat]\nencoding_aes_key = 'abc'\n", "wechat.encoding_aes_key"),
        ("[points]\nrate = 0\n", "points.rate"),
    ],
)
def test_bad_value_names_the_key(tmp_path, text, key):
    message = load_error(write(tmp_path, text))
    assert message.startswith(f"config error: {key}")
    assert "config.toml" in message


# --------------------------------------------------------------------------- environment


def test_environment_overrides_every_kind_of_key(tmp_path):
    path = write(tmp_path, "[server]\nport = 9000\n[sms.twilio]\nauth_token = 'file-token'\n")
    environ = {
        "MEMBERBOT_SERVER_HOST": "0.0.0.0",  # str
        "MEMBERBOT_SERVER_PORT": "9100",  # int, over the file's 9000
        "MEMBERBOT_OUTBOX_POLL_INTERVAL": "2.5",  # float
        "MEMBERBOT_SCHEDULER_ENABLED": "false",  # bool
        "MEMBERBOT_SMS_PROVIDER": "twilio",  # literal
        "MEMBERBOT_SMS_TWILIO_AUTH_TOKEN": "env-token",  # nested table
        "MEMBERBOT_API_KEYS": f'["{KEY}", "{KEY}2"]',  # JSON list
        "MEMBERBOT_POINTS_RATE": "1.5",  # decimal
        "MEMBERBOT_POINTS_BIRTHDAY_MULTIPLIER": '{"gold": 3}',  # JSON table
        "MEMBERBOT_POINTS_EXPIRY_POLICY": "months",  # two levels deep
    }
    s = load_settings(path, environ=environ)
    assert s.server.host == "0.0.0.0"
    assert s.server.port == 9100
    assert s.outbox.poll_interval == 2.5
    assert s.scheduler.enabled is False
    assert s.sms.provider == "twilio"
    assert s.sms.twilio.auth_token == "env-token"
    assert s.api.keys == [KEY, KEY + "2"]
    assert s.points.rate == Decimal("1.5")
    assert s.points.birthday_multiplier == {"gold": Decimal("3")}
    assert s.points.expiry.policy == "months"


def test_environment_works_without_a_file():
    s = load_settings(
        None, environ={"MEMBERBOT_SMS_TWILIO_AUTH_TOKEN": "t", "MEMBERBOT_API_KEYS": f'["{KEY}"]'}
    )
    assert s.sms.twilio.auth_token == "t"
    assert s.api.keys == [KEY]


def test_string_keys_are_taken_verbatim_even_when_they_look_like_json():
    environ = {"MEMBERBOT_SMS_TWILIO_AUTH_TOKEN": "12345", "MEMBERBOT_BRAND_NAME": '"quoted"'}
    s = load_settings(None, environ=environ)
    assert s.sms.twilio.auth_token == "12345"
    assert s.brand.name == '"quoted"'


def test_unmatched_environment_variables_are_ignored():
    environ = {"MEMBERBOT_CONFIG": "x.toml", "MEMBERBOT_NOT_A_KEY": "1", "MEMBERBOT_SERVER": "x"}
    assert load_settings(None, environ=environ).server.port == 8080


@pytest.mark.parametrize(
    ("env", "value", "key"),
    [
        ("MEMBERBOT_SERVER_PORT", "abc", "server.port"),
        ("MEMBERBOT_API_KEYS", "not-json", "api.keys"),
        ("MEMBERBOT_API_KEYS", '["short"]', "api.keys"),
        ("MEMBERBOT_SCHEDULER_ENABLED", "perhaps", "scheduler.enabled"),
    ],
)
def test_bad_environment_value_names_key_and_variable(env, value, key):
    message = load_error(None, {env: value})
    assert message.startswith(f"config error: {key}")
    assert f"environment variable {env}" in message


# --------------------------------------------------------------------------- which file


def test_config_path_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path(None, {}) is None
    (tmp_path / "config.toml").write_text("", encoding="utf-8")
    assert resolve_config_path(None, {}) == Path("config.toml")
    assert resolve_config_path(None, {"MEMBERBOT_CONFIG": "other.toml"}) == Path("other.toml")
    assert resolve_config_path("given.toml", {"MEMBERBOT_CONFIG": "other.toml"}) == Path(
        "given.toml"
    )
