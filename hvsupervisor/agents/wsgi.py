"""Serve an OpenStack WSGI app with gunicorn, behind argv the app can parse.

Why this exists: nova, neutron and placement build their WSGI application at
import time and parse ``sys.argv`` with oslo.config while doing it (nova's
``wsgi_app.init_global_data`` says the WSGI runner is expected to set it, as
uwsgi's ``--pyargv`` does). Under a plain ``gunicorn module:app`` the app would
see gunicorn's own options and fail. So this launcher takes its server
options first and hands every other argument (``--config-file F``,
``--log-file F``, ...) to the app as its ``sys.argv``. That keeps the agent's
argv the same shape as every other agent: command + ``--config-file F`` for
each resolved file.

gunicorn, not uwsgi: gunicorn is a pure-python wheel on PyPI (no compiler, no
libpython headers), and its master handles SIGTERM (graceful, bounded by
``graceful_timeout``) and SIGINT/SIGQUIT (immediate) as the supervisor
expects. Workers import the app after the fork, so the master stays small
and a failed import exits the master (gunicorn's "worker failed to boot",
rc 3) instead of serving errors.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

WSGIApp = Callable[..., Any]
# Settings only some gunicorn versions know.
_OPTIONAL = frozenset({"control_socket_disable"})


def server_arg_parser(prog: str) -> argparse.ArgumentParser:
    """The launcher's own options; everything else belongs to the app."""
    parser = argparse.ArgumentParser(prog=prog, add_help=False, allow_abbrev=False)
    parser.add_argument("--bind", required=True, help="HOST:PORT (or unix:PATH) to listen on")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        help="seconds SIGTERM waits for requests in flight before workers are killed",
    )
    return parser


def split_argv(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> tuple[argparse.Namespace, list[str]]:
    """Separate the launcher's options from the app's (which are left in order)."""
    return parser.parse_known_args(list(argv))


def load_attr(spec: str) -> WSGIApp:
    """Import ``module:attribute`` (the attribute is the WSGI callable)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"app must be MODULE:ATTRIBUTE, got {spec!r}")
    return getattr(importlib.import_module(module_name), attr)


def serve(loader: Callable[[], WSGIApp], opts: argparse.Namespace, proc_name: str) -> None:
    """Run gunicorn in this process (the master) until it is signalled.

    ``opts`` are the options of :func:`server_arg_parser` (bind, workers,
    threads, graceful_timeout), the one place they are defined.

    gunicorn is imported here so that merely importing this module (tests, the
    catalog lint) does not need it.
    """
    from gunicorn.app.base import BaseApplication

    settings: dict[str, Any] = {
        "bind": [opts.bind],
        "workers": opts.workers,
        "threads": opts.threads,
        "worker_class": "gthread" if opts.threads > 1 else "sync",
        "graceful_timeout": str(int(opts.graceful_timeout)),
        "proc_name": proc_name,
        # No access log: the app logs its requests through oslo.log.
        "accesslog": None,
        "errorlog": "-",
        # gunicorn >= 24 opens a control socket at ~/.gunicorn/gunicorn.ctl by
        # default: one path shared by every instance of the user, in root's
        # home. The supervisor controls the agent by signals; none is needed.
        "control_socket_disable": True,
    }

    class _App(BaseApplication):  # type: ignore[misc]
        # Only our settings: BaseApplication (unlike gunicorn's Application)
        # reads no gunicorn.conf.py from the cwd and no GUNICORN_CMD_ARGS.
        def load_config(self) -> None:
            for key, value in settings.items():
                if key in _OPTIONAL and key not in self.cfg.settings:
                    continue  # an older gunicorn without that feature
                self.cfg.set(key, value)

        def load(self) -> WSGIApp:
            return loader()

    _App(prog=proc_name).run()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m hvsupervisor.agents.wsgi --app MOD:ATTR --bind H:P [app args...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = server_arg_parser("hvsupervisor-wsgi")
    parser.add_argument("--app", required=True, help="MODULE:ATTRIBUTE of the WSGI app")
    parser.add_argument("--name", default=None, help="program name the app sees as argv[0]")
    opts, app_args = split_argv(parser, argv)
    name = opts.name or opts.app.partition(":")[0]
    sys.argv = [name, *app_args]
    serve(lambda: load_attr(opts.app), opts, name)


if __name__ == "__main__":
    main()
