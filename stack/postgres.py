"""PostgreSQL from Debian's packages: installed if missing, one cluster started, role and database made."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg

from stack.procs import StackError, port_open, run, wait_until

ROLE = "tally"
PASSWORD = "tally"
DATABASE = "tally"


def url(port: int = 5432, database: str = DATABASE) -> str:
    return f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{port}/{database}"


def can_connect(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def installed_versions() -> list[str]:
    base = Path("/usr/lib/postgresql")
    if not base.exists():
        return []
    return sorted((p.name for p in base.iterdir() if (p / "bin" / "postgres").exists()), key=float)


def install() -> None:
    if os.geteuid() != 0:
        raise StackError("PostgreSQL is not installed and installing it needs root: run `sudo apt-get install -y postgresql`, then `make up`")
    print("installing PostgreSQL from Debian's packages (once) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], "apt-get update", env=env)
    run(["apt-get", "install", "-y", "-q", "postgresql"], "installing PostgreSQL with apt-get", env=env)


def as_postgres(sql: str) -> str:
    return run(["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-qAtc", sql], f"psql: {sql[:40]}")


def start_cluster(version: str, port: int) -> None:
    clusters = run(["pg_lsclusters", "--no-header"], "listing PostgreSQL clusters")
    if not any(line.split()[:2] == [version, "main"] for line in clusters.splitlines()):
        run(["pg_createcluster", "-p", str(port), version, "main"], "creating the PostgreSQL cluster")
    try:
        run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], "starting PostgreSQL")
    except StackError as exc:
        # pg_ctlcluster can report a failed start although the server came up (seen on a machine
        # whose /dev/null was not a device): the port answering is what counts.
        if not wait_until(lambda: port_open(port), 30):
            raise StackError(f"{exc} (see /var/log/postgresql/)") from exc
    if not wait_until(lambda: port_open(port), 30):
        raise StackError(f"PostgreSQL {version} started but does not listen on {port}: see /var/log/postgresql/")


def ensure_role_and_database() -> None:
    if as_postgres(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'").strip() != "1":
        as_postgres(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
    if as_postgres(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'").strip() != "1":
        as_postgres(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")


def ensure_postgres(port: int = 5432) -> str:
    """Return the URL of a usable database on `port`, installing and starting PostgreSQL if needed."""
    dsn = url(port)
    if can_connect(dsn):
        return dsn
    versions = installed_versions()
    if not versions:
        install()
        versions = installed_versions()
        if not versions:
            raise StackError("apt-get installed postgresql but no server binary was found under /usr/lib/postgresql")
    version = versions[-1]
    if port_open(port):
        if shutil.which("runuser") is None or os.geteuid() != 0:
            raise StackError(f"port {port} is taken by a server Tally cannot log in to: set DATABASE_URL, or free the port")
    else:
        start_cluster(version, port)
    try:
        ensure_role_and_database()
    except StackError as exc:
        raise StackError(f"port {port} answers but Tally cannot set up its database there ({exc}): set DATABASE_URL, or free the port") from exc
    if not can_connect(dsn):
        raise StackError(f"PostgreSQL runs but {ROLE}@127.0.0.1:{port} cannot log in: check pg_hba.conf allows password logins on 127.0.0.1")
    return dsn
