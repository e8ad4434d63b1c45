"""config.example.toml documents every key, with the built-in defaults."""

from pathlib import Path

from models.settings import Settings
from models.settings.load import env_keys, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


def test_example_loads_and_equals_the_defaults():
    assert load_settings(EXAMPLE, environ={}).model_dump() == Settings().model_dump()


def test_every_key_is_documented_in_the_example():
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = []
    for _env, path, _ann in env_keys():
        key = path[-1]
        if f"{key} =" not in text and f"{key}=" not in text and f"[{'.'.join(path)}]" not in text:
            missing.append(".".join(path))
    assert missing == []
