"""The deployment's config files for loopback test ports, made from deploy/'s own
(`tests.reliability.stack`): what only fits a real host is swapped, the rest is the
shipped configuration."""

from __future__ import annotations

import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def haproxy_config(
    *, bind_port: int, stats_port: int, servers: list[tuple[str, int]], source: Path | None = None
) -> str:
    """deploy/haproxy.cfg for loopback: a foreground `global`, `bind` on `bind_port`
    (plain http: no redirect to https), the stats page on `stats_port`, `servers`."""
    lines = (source or DEPLOY / "haproxy.cfg").read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    section = ""
    for line in lines:
        stripped = line.strip()
        if line and not line[0].isspace() and not line.startswith("#"):
            section = stripped
            out.append(line)
            if section == "global":
                out += ["    maxconn 4000", "    log stderr format short local0 notice"]
            continue
        keyword = stripped.split(" ", 1)[0] if stripped else ""
        if section == "global":
            continue
        if section.startswith("frontend stats") and keyword == "bind":
            out.append(f"    bind 127.0.0.1:{stats_port}")
        elif section.startswith("frontend") and keyword == "bind":
            if ":443" not in stripped:
                out.append(f"    bind 127.0.0.1:{bind_port}")
        elif section.startswith("frontend") and stripped.startswith("http-request redirect"):
            continue
        elif section.startswith("backend") and keyword == "server":
            if not any(o.startswith("    server ") for o in out):
                out += [f"    server {name} 127.0.0.1:{port}" for name, port in servers]
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def pgbouncer_config(
    *,
    listen_port: int,
    pg_host: str,
    pg_port: int,
    dbname: str,
    user: str,
    auth_file: Path,
    overrides: dict[str, str] | None = None,
) -> str:
    """deploy/pgbouncer.ini for loopback: `memberbot` → `dbname` on the test server, trust
    authentication, log to stderr, no pid file or unix socket; `overrides` of
    `[pgbouncer]` keys last."""
    ini = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    ini.optionxform = str  # keep the keys' case
    ini.read(DEPLOY / "pgbouncer.ini", encoding="utf-8")
    ini["databases"] = {"memberbot": f"host={pg_host} port={pg_port} dbname={dbname} user={user}"}
    bouncer = ini["pgbouncer"]
    for key in ("logfile", "pidfile"):
        bouncer.pop(key, None)
    bouncer.update(
        listen_addr="127.0.0.1",
        listen_port=str(listen_port),
        unix_socket_dir="",
        auth_type="trust",
        auth_file=str(auth_file),
        admin_users=user,
        stats_users=user,
    )
    bouncer.update(overrides or {})
    lines = []
    for name in ini.sections():
        lines.append(f"[{name}]")
        lines += [f"{k} = {v}" for k, v in ini[name].items()]
    return "\n".join(lines) + "\n"


def toml(tables: dict) -> str:
    """Nested dicts of str/bool/int/list values as TOML tables (enough for settings)."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines: list[str] = []

    def table(prefix: str, d: dict) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", tables)
    return "\n".join(lines) + "\n"
