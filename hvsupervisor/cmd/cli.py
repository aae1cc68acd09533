"""The ``hvsupervisor`` command line: one verb per intent, as systemctl does.

Operator mistakes end as one line on stderr and an exit code (78 for
configuration, EX_CONFIG), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

from hvsupervisor.config import paths
from hvsupervisor.config.errors import EX_CONFIG, ConfigError


def _global_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("layers and directories")
    g.add_argument("--defaults-dir", type=Path, default=None,
                   help="shipped defaults (default: the package's etc/)")
    g.add_argument("--override-dir", type=Path, default=None,
                   help=f"operator overrides and conf.d snippets (default: "
                        f"{paths.DEFAULT_OVERRIDE_DIR})")
    g.add_argument("--state-dir", default=None, help="overrides [DEFAULT] state_dir")
    g.add_argument("--log-dir", default=None, help="overrides [DEFAULT] log_dir")
    g.add_argument("--run-dir", default=None, help="overrides [DEFAULT] run_dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hvsupervisor",
        description="Run and supervise an OpenStack hypervisor node's agents.",
    )
    _global_options(parser)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="start and supervise every enabled agent (foreground)")
    p.add_argument("--daemon", action="store_true",
                   help="detach (python-daemon), for hosts without systemd")
    p = sub.add_parser("status", help="each agent's state")
    p.add_argument("--format", choices=["table", "json"], default="table")
    for verb, text in (("restart", "restart agents (revives a failed one)"),
                       ("start", "start stopped agents"),
                       ("stop", "stop agents (all when none named); the supervisor stays")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("agents", nargs="*" if verb == "stop" else "+", metavar="AGENT")
    p = sub.add_parser("reload", help="apply changed config: restart only the agents whose "
                                      "plan changed; a bad config is refused whole")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--dry-run", action="store_true",
                   help="apply nothing: list which agents would restart, start or stop, and "
                   "the options that changed (as `config diff`)")

    p = sub.add_parser("cleanup", help="neutron-ovs-cleanup / neutron-netns-cleanup with the "
                       "node's resolved config (boot only: never while agents run)")
    p.add_argument("what", choices=["ovs", "netns"])
    p.add_argument("tool_args", nargs=argparse.REMAINDER,
                   help="--dry-run prints the argv; other options (e.g. --force) go to the tool")

    p = sub.add_parser("demo", help="a self-contained demo node joining a demo cloud, under "
                       "one directory, in the foreground (root; Ctrl-C stops it all)")
    p.add_argument("--dir", type=Path, default=None,
                   help="the demo directory (default: $HVSUP_DEMO_DIR, else ./.demo)")
    p.add_argument("--boot", action="store_true",
                   help="once the node has joined, boot a VM through nova and print its "
                   "console lines")

    p = sub.add_parser("install-units", help="copy the systemd units (and drop-ins naming this "
                       "install's hvsupervisor), tmpfiles.d and logrotate snippets")
    p.add_argument("--root", default="/", help="install under this root (default /)")

    from hvsupervisor.cmd import release as release_cmd  # its parser only; no I/O at import

    release_cmd.add_parser(sub)

    p = sub.add_parser("check", help="run every gate and preflight once; exit 1 on a failure")
    p.add_argument("--format", choices=["table", "json"], default="table")

    cfgp = sub.add_parser("config", help="show the resolved configuration")
    csub = cfgp.add_subparsers(dest="config_verb", required=True, metavar="SUBCOMMAND")
    p = csub.add_parser("plan", help="an agent's argv, environment, files and digest")
    p.add_argument("agent")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p = csub.add_parser("explain", help="an option's effective value and the file:line that set it")
    p.add_argument("agent")
    p.add_argument("section")
    p.add_argument("option")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p = csub.add_parser("diff", help="each running agent's plan against the files on disk "
                        "now: option, old -> new, file:line; which agents a reload restarts")
    p.add_argument("agent", nargs="?")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p = csub.add_parser("validate", help="resolve every enabled agent's plan; exit 78 if invalid")
    p.add_argument("--format", choices=["table", "json"], default="table")
    return parser


# verb -> the cmd module that runs it (imported only when that verb runs)
_VERBS = {
    "run": "run", "status": "control", "restart": "control", "start": "control",
    "stop": "control", "reload": "control", "cleanup": "cleanup", "demo": "demo",
    "install-units": "install_units", "check": "check", "config": "config",
    "release": "release",
}


def main(argv: list[str] | None = None) -> int:
    # ovs.poller imports eventlet when it is installed (it is, beside neutron),
    # and eventlet warns about its own deprecation on import: noise for us.
    warnings.filterwarnings("ignore", message=".*[Ee]ventlet.*")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb == "run":
        # Before anything slow (oslo imports, plans): a SIGHUP now must not kill us.
        from hvsupervisor.process.early_signals import PENDING

        PENDING.install()
    try:
        verb = _VERBS[args.verb]
        if (args.verb == "reload" and args.dry_run) or (
                args.verb == "config" and args.config_verb == "diff"):
            verb = "diff"
        module = importlib.import_module(f"hvsupervisor.cmd.{verb}")
        return module.main(args)
    except ConfigError as exc:
        print(f"hvsupervisor: {exc}", file=sys.stderr)
        return EX_CONFIG
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
