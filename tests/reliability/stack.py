"""A deployment on loopback ports, built from the files in deploy/: PostgreSQL (the test
server) ← PgBouncer (deploy/pgbouncer.ini) ← N `memberbot serve` replicas ← haproxy
(deploy/haproxy.cfg). For the reliability tests and a longer soak run alike:

    with Stack(tmp, pg_admin_url=…, dbname="memberbot_lb", settings={…}) as stack:
        stack.start(replicas=2)            # pgbouncer, replicas (healthy), haproxy (all UP)
        stack.url                          # http://127.0.0.1:<haproxy port>
        stack.replicas[0].kill()           # SIGKILL
        stack.wait_state(stack.replicas[0], "DOWN")
        stack.server_stats()               # haproxy's per-replica counters

The production files are used as they are but for what only fits a real host: in
haproxy.cfg the `global` section (chroot, user, syslog, stats socket), the `bind` lines
and the `server` lines; in pgbouncer.ini the database line, the ports, files and the
authentication (trust on loopback). Everything they are about — health checks,
timeouts, retries, forwarded headers and request ids, transaction pooling — is the
shipped configuration.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.configs import REPO, haproxy_config, pgbouncer_config, toml

STATS_PATH = "/stats"


def binary(name: str) -> str | None:
    """The path of a system binary (haproxy and pgbouncer live in /usr/sbin)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, *, timeout: float, what: str, interval: float = 0.1):
    """Call `check()` until it returns something true (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


# --------------------------------------------------------------------------- processes


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen | None = None

    def start(self) -> Process:
        handle = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=handle, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd
        )
        handle.close()
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash, no clean-up."""
        if self.running:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if not self.running:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


@dataclass
class Replica(Process):
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def server(self) -> str:
        """Its name in haproxy's backend."""
        return f"r{self.port}"


@dataclass
class Stack:
    """The deployment in `workdir` (see the module). `settings` is written to the
    replicas' config.toml on top of what the stack sets (database, server)."""

    workdir: Path
    pg_admin_url: str
    """postgresql://user@host:port/postgres: where the test database is created."""
    dbname: str
    settings: dict = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    bouncer: dict[str, str] = field(default_factory=dict)
    """`[pgbouncer]` keys over deploy/pgbouncer.ini's (e.g. a pool size)."""
    replicas: list[Replica] = field(default_factory=list)
    pgbouncer: Process | None = None
    haproxy: Process | None = None
    lb_port: int = 0
    stats_port: int = 0
    bouncer_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://{self._pg_user}@127.0.0.1:{self.bouncer_port}/memberbot"

    @property
    def _pg_user(self) -> str:
        return self.pg_admin_url.split("://", 1)[1].split("@", 1)[0].split(":")[0]

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in [self.haproxy, *self.replicas, self.pgbouncer]:
            if proc is not None:
                proc.stop()

    # ----------------------------------------------------------------- pieces

    def start(self, replicas: int = 2, *, timeout: float = 120) -> None:
        self.start_pgbouncer()
        ports = [free_port() for _ in range(replicas)]
        for port in ports:
            self.start_replica(port)
        for replica in self.replicas:
            self.wait_healthy(replica, timeout=timeout)
        self.start_haproxy(timeout=timeout)

    def start_pgbouncer(self) -> Process:
        host, port = _host_port(self.pg_admin_url)
        self.bouncer_port = free_port()
        # PgBouncer refuses to run as root: then it runs as nobody, which must be able to
        # read its files (pytest's tmp directories are private).
        folder = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir=self.workdir))
        folder.chmod(0o755)
        users = folder / "userlist.txt"
        users.write_text(f'"{self._pg_user}" ""\n', encoding="utf-8")
        ini = folder / "pgbouncer.ini"
        ini.write_text(
            pgbouncer_config(
                listen_port=self.bouncer_port,
                pg_host=host,
                pg_port=port,
                dbname=self.dbname,
                user=self._pg_user,
                auth_file=users,
                overrides=self.bouncer,
            ),
            encoding="utf-8",
        )
        for path in (users, ini):
            path.chmod(0o644)
        argv = [binary("pgbouncer") or "pgbouncer"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        self.pgbouncer = Process("pgbouncer", [*argv, str(ini)], self.workdir / "pgbouncer.log")
        self.pgbouncer.start()
        wait_until(
            lambda: port_open(self.bouncer_port) or self._died(self.pgbouncer),
            timeout=15,
            what="pgbouncer",
        )
        self._died(self.pgbouncer)
        return self.pgbouncer

    def write_config(self) -> Path:
        path = self.workdir / "config.toml"
        base = {
            "server": {
                "host": "127.0.0.1",
                "public_url": f"http://127.0.0.1:{self.lb_port or 1}",
                "trusted_proxies": ["127.0.0.1"],
            },
            "database": {"url": self.database_url, "pgbouncer": True},
        }
        for section, values in self.settings.items():
            base.setdefault(section, {}).update(values)
        path.write_text(toml(base), encoding="utf-8")
        tomllib.loads(path.read_text(encoding="utf-8"))  # written right
        return path

    def start_replica(self, port: int) -> Replica:
        if not self.lb_port:
            self.lb_port = free_port()  # public_url names it before haproxy starts
        config = self.write_config()
        # the config file only (no MEMBERBOT_* of the caller's), then `env`
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMBERBOT_")}
        env |= {"PYTHONPATH": str(REPO), **self.env}
        replica = Replica(
            name=f"replica-{port}",
            argv=[
                sys.executable,
                "-m",
                "bot.cli",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            log=self.workdir / f"replica-{port}.log",
            env=env,
            cwd=self.workdir,
            port=port,
        )
        replica.start()
        self.replicas.append(replica)
        return replica

    def wait_healthy(self, replica: Replica, *, timeout: float = 120) -> None:
        wait_until(
            lambda: http_status(replica.url + "/healthz") == 200 or self._died(replica),
            timeout=timeout,
            what=f"{replica.name} /healthz",
        )
        self._died(replica)

    def start_haproxy(self, *, timeout: float = 60) -> Process:
        if not self.lb_port:
            self.lb_port = free_port()
        self.stats_port = free_port()
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(
            haproxy_config(
                bind_port=self.lb_port,
                stats_port=self.stats_port,
                servers=[(r.server, r.port) for r in self.replicas],
            ),
            encoding="utf-8",
        )
        haproxy = binary("haproxy") or "haproxy"
        check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused the config:\n{check.stdout}{check.stderr}")
        argv = [haproxy, "-db", "-f", str(cfg)]
        self.haproxy = Process("haproxy", argv, self.workdir / "haproxy.log")
        self.haproxy.start()
        for replica in self.replicas:
            self.wait_state(replica, "UP", timeout=timeout)
        return self.haproxy

    # ----------------------------------------------------------------- haproxy's view

    def server_stats(self) -> dict[str, dict[str, str]]:
        """haproxy's CSV stats of the backend's servers, by server name."""
        url = f"http://127.0.0.1:{self.stats_port}{STATS_PATH};csv"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        header, *rows = [line for line in text.splitlines() if line]
        names = header.lstrip("# ").split(",")
        stats = {}
        for row in rows:
            values = dict(zip(names, row.split(","), strict=False))
            if values.get("pxname") == "memberbot_replicas" and values["svname"] not in (
                "FRONTEND",
                "BACKEND",
            ):
                stats[values["svname"]] = values
        return stats

    def wait_state(self, replica: Replica, state: str, *, timeout: float = 60) -> None:
        """Until haproxy's health check has `replica` in `state` (UP / DOWN)."""

        def reached() -> bool:
            self._died(self.haproxy)
            try:
                return self.server_stats()[replica.server]["status"].startswith(state)
            except OSError:  # the stats page is not listening yet
                return False

        wait_until(reached, timeout=timeout, what=f"haproxy to mark {replica.server} {state}")

    def _died(self, proc: Process | None) -> bool:
        """Raise with its output when `proc` has exited (else False)."""
        if proc is not None and proc.popen is not None and proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited ({proc.popen.returncode}):\n{proc.output()[-3000:]}"
            )
        return False


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _host_port(url: str) -> tuple[str, int]:
    hostport = url.split("@", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return (host, int(port)) if host else (hostport, 5432)
