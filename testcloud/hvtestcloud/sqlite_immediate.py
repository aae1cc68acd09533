"""Run a demo-cloud daemon whose SQLite transactions take the write lock first.

    python -m hvtestcloud.sqlite_immediate /venv/bin/neutron-rpc-server ARGS...
    python -m hvtestcloud.sqlite_immediate -m hvsupervisor.agents.wsgi ARGS...

Why (doc/upstream-behaviour.md section 14, "sqlite"): oslo.db turns off
pysqlite's own transaction handling and sends a plain ``BEGIN`` (deferred)
itself. A deferred transaction reads first and asks for the write lock at its
first write; in WAL mode, if another connection committed in between, SQLite
answers ``database is locked`` (SQLITE_BUSY_SNAPSHOT) *at once*, without the
busy timeout (``?timeout=30``) ever applying. neutron-server's API and RPC
processes (and nova's conductor, scheduler and API) do exactly that
concurrently, so under load a port create failed with HTTP 500 and the boot
went to ERROR. ``BEGIN IMMEDIATE`` takes the write lock at the start, where
the busy timeout does apply: writers queue instead of failing. Readers are
not blocked (WAL).

Only the throwaway demo cloud (hvtestcloud/cloud.py) runs this way; production uses
a server database, and the node's own agents are never wrapped.

The hook is at the DB-API level (``sqlite3.connect`` gets a connection class
whose cursors rewrite ``BEGIN``), not an SQLAlchemy event: installing it
imports nothing, so eventlet's monkey patching in the daemon still comes
first.
"""

from __future__ import annotations

import runpy
import sqlite3
import sqlite3.dbapi2
import sys

_connect = sqlite3.dbapi2.connect


class ImmediateCursor(sqlite3.Cursor):
    def execute(self, sql, parameters=(), /):
        if isinstance(sql, str) and sql.strip().upper() in ("BEGIN", "BEGIN DEFERRED"):
            sql = "BEGIN IMMEDIATE"
        return super().execute(sql, parameters)


class ImmediateConnection(sqlite3.Connection):
    def cursor(self, factory=ImmediateCursor):
        return super().cursor(factory)

    def execute(self, sql, parameters=(), /):
        return self.cursor().execute(sql, parameters)


def connect(*args, **kwargs):
    """sqlite3.connect with ImmediateConnection unless a factory is given."""
    kwargs.setdefault("factory", ImmediateConnection)
    return _connect(*args, **kwargs)


def install() -> None:
    sqlite3.connect = sqlite3.dbapi2.connect = connect


def main(argv: list[str]) -> None:
    if not argv or (argv[0] == "-m" and len(argv) < 2):
        sys.exit("usage: python -m hvtestcloud.sqlite_immediate "
                 "(SCRIPT | -m MODULE) [ARGS...]")
    install()
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:  # a console script, run as its own interpreter would
        sys.argv = list(argv)
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
