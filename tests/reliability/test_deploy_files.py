"""The files in deploy/ are what they claim: the config and its secrets load, the unit
starts `memberbot serve` with arguments the CLI takes, and haproxy accepts the whole
production haproxy.cfg (with a throwaway certificate in place of the real one)."""

from __future__ import annotations

import configparser
import datetime
import shlex
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.cli import build_parser
from models.settings.load import load_settings
from tests.reliability.configs import DEPLOY
from tests.reliability.stack import binary

CERT = "/etc/haproxy/certs/memberbot.pem"


def _env_file(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_the_config_and_the_env_file_load():
    environ = _env_file(DEPLOY / "memberbot.env.example")
    assert set(environ) >= {"MEMBERBOT_DATABASE_URL", "MEMBERBOT_API_KEYS"}
    environ["MEMBERBOT_WECHAT_ENCODING_AES_KEY"] = "a" * 43  # the placeholder's length aside
    settings = load_settings(DEPLOY / "config.toml", environ=environ)
    assert settings.database.pgbouncer
    assert settings.database.url.endswith(":6432/memberbot")  # PgBouncer's port
    assert settings.server.trusted_proxies == ["127.0.0.1/32", "::1/128"]
    assert settings.server.public_url.startswith("https://")


def test_the_unit_runs_serve_with_the_port_of_its_instance():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(DEPLOY / "memberbot@.service", encoding="utf-8")
    service = unit["Service"]
    assert service["User"] == "memberbot"
    assert service["EnvironmentFile"] == "/etc/memberbot/memberbot.env"
    argv = shlex.split(service["ExecStart"].replace("%i", "8081"))
    assert argv[0].endswith("/memberbot")
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.config, args.port) == ("serve", "/etc/memberbot/config.toml", 8081)


def _self_signed(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "members.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_haproxy_accepts_the_production_config(tmp_path: Path):
    haproxy = binary("haproxy")
    if haproxy is None:
        pytest.skip("haproxy not installed (apt-get install -y haproxy)")
    pem = tmp_path / "memberbot.pem"
    _self_signed(pem)
    text = (DEPLOY / "haproxy.cfg").read_text(encoding="utf-8")
    assert CERT in text
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text.replace(CERT, str(pem)), encoding="utf-8")
    check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
    output = check.stdout + check.stderr
    assert check.returncode == 0, output
    assert "WARNING" not in output, output
