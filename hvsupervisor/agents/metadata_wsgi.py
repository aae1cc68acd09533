"""nova-api-metadata for hvsupervisor: nova's metadata WSGI app under gunicorn.

nova >= 32 ships no ``nova-api-metadata`` console script, only the module
``nova.wsgi.metadata`` whose import builds the app. Facts this relies on
(nova 34, ``nova/api/openstack/wsgi_app.py``):

- ``init_global_data`` parses ``sys.argv`` with oslo.config, so the agent's
  ``--config-file``/``--log-file`` arguments must be in ``sys.argv``;
- the paste pipeline is loaded from the *first* of the files named by
  ``OS_NOVA_CONFIG_DIR``/``OS_NOVA_CONFIG_FILES`` (default
  ``/etc/nova/api-paste.ini``), whatever ``--config-file`` says;
- it registers a ``nova-metadata`` service row, so nova.conf needs
  ``[database]``/``[api_database]`` (site snippet), but no message bus.

So this launcher sets ``sys.argv`` to the agent's own arguments and points
``OS_NOVA_CONFIG_FILES`` at an ``api-paste.ini`` found the way oslo.config's
``find_file`` would (beside the config files, last first), falling back to
the one nova's own package installs (``<prefix>/etc/nova/api-paste.ini``)
and then ``/etc/nova/api-paste.ini``. hvsupervisor ships no paste file: an
operator who wants another pipeline drops one next to an override file or
passes ``--paste-config``.

Usage (the catalog appends one ``--config-file`` per resolved file)::

    python -m hvsupervisor.agents.metadata_wsgi --bind 127.0.0.1:8775 \
        --log-file /var/log/hvsupervisor/nova-api-metadata.log \
        --config-file .../nova/nova.conf --config-file .../nova.conf.d/50-site.conf
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from hvsupervisor.agents import wsgi

PROG = "nova-api-metadata"
APP = "nova.wsgi.metadata:application"
PASTE_NAME = "api-paste.ini"
EX_CONFIG = 78


def config_args(argv: Sequence[str], option: str) -> list[str]:
    """Values of ``--option X`` / ``--option=X`` in argv, in order."""
    values: list[str] = []
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(option + "="):
            values.append(arg.split("=", 1)[1])
    return values


def find_paste_config(argv: Sequence[str], prefix: str = sys.prefix) -> str | None:
    """Where nova's paste pipeline is, searched like oslo.config's find_file.

    Config dirs first, then the directories of the config files, last file
    first (so an override dir wins over the defaults dir), then nova's own
    packaged copy under ``prefix``, then the distro location.
    """
    dirs = config_args(argv, "--config-dir")
    dirs += [os.path.dirname(f) for f in reversed(config_args(argv, "--config-file"))]
    dirs += [os.path.join(prefix, "etc", "nova"), "/etc/nova"]
    for directory in dirs:
        candidate = os.path.join(os.path.abspath(directory), PASTE_NAME)
        if os.path.isfile(candidate):
            return candidate
    return None


def prepare(
    argv: Sequence[str], environ: dict[str, str] | os._Environ[str], paste: str | None = None
) -> list[str]:
    """Point ``environ`` at the paste file and return the app's ``sys.argv``.

    Raises ValueError with a one-line message when no paste file is usable.
    """
    if paste is not None and not os.path.isfile(paste):
        raise ValueError(f"--paste-config {paste}: no such file")
    paste = paste or find_paste_config(argv)
    if paste is None:
        raise ValueError(
            f"no {PASTE_NAME} beside the config files, in {sys.prefix}/etc/nova "
            "or /etc/nova; pass --paste-config PATH"
        )
    paste = os.path.abspath(paste)
    environ["OS_NOVA_CONFIG_DIR"] = os.path.dirname(paste)
    environ["OS_NOVA_CONFIG_FILES"] = os.path.basename(paste)
    return [PROG, *argv]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script ``hvsupervisor-nova-metadata``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = wsgi.server_arg_parser(PROG)
    parser.add_argument("--paste-config", default=None, help="api-paste.ini to use")
    opts, app_args = wsgi.split_argv(parser, argv)
    try:
        sys.argv = prepare(app_args, os.environ, opts.paste_config)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        sys.exit(EX_CONFIG)
    wsgi.serve(lambda: wsgi.load_attr(APP), opts, PROG)


if __name__ == "__main__":
    main()
