"""``hvsupervisor release build|install|list|switch|rollback`` (doc/release.md).

build runs where a package index is reachable; everything else works offline.
A refusal is one line (or a short block naming the file:line the new release
refused) and exit 1; nothing is half-applied.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hvsupervisor.cmd.common import dir_flags, load, run_dir
from hvsupervisor.cmd.render import print_json, table
from hvsupervisor.control.rundir import CONTROL_NAME


def _store(args, settings=None):
    from hvsupervisor.release.store import ReleaseStore

    root = args.root or (settings or load(args)).supervisor.release_root
    return ReleaseStore(root)


def _build(args) -> int:
    from hvsupervisor.release import artifact

    python = args.python or artifact.NODE_PYTHON
    out, rel = artifact.build(args.track, Path(args.source), Path(args.output), python=python,
                              requires=args.require or None,
                              constraints=Path(args.constraints) if args.constraints else None)
    size = out.stat().st_size
    if args.format == "json":
        print_json({"artifact": str(out), "bytes": size, **rel.to_manifest()})
    else:
        print(f"{out} ({size / 1e6:.1f} MB): {rel.id}: {rel.summary()}")
    return 0


def _install(args) -> int:
    from hvsupervisor.release import artifact

    store = _store(args)
    rel = artifact.install(Path(args.file), store, python=args.python or artifact.NODE_PYTHON)
    print(f"installed {rel.id} in {store.path(rel.id)}: {rel.summary()}")
    if store.link("current") is None:
        print(f"no release is current yet: hvsupervisor release switch {rel.id}")
    return 0


def _list(args) -> int:
    from hvsupervisor.core.release_model import newest_pending

    store = _store(args)
    current, previous = store.link("current"), store.link("previous")
    installed = store.installed()
    cur = next((r for r in installed if r.id == current), None)
    pending = newest_pending(cur, installed)
    txn = store.read_txn()
    rows = []
    for r in installed:
        role = ("current" if r.id == current else "previous" if r.id == previous
                else "installed")
        rows.append({"id": r.id, "role": role, "track": r.track, "built": r.built,
                     "nova": r.dist_version("nova"), "neutron": r.dist_version("neutron"),
                     "hvsupervisor": r.version, "distributions": len(r.dists),
                     "bad": r.bad, "pending": bool(pending and pending.id == r.id)})
    if args.format == "json":
        print_json({"root": str(store.root), "current": current, "previous": previous,
                    "switch_in_progress": txn.to_primitive() if txn else None,
                    "releases": rows})
        return 0
    print(table(["release", "role", "track", "nova", "neutron", "built", "note"],
                [(r["id"], r["role"], r["track"], r["nova"] or "-", r["neutron"] or "-",
                  r["built"], (f"BAD: {r['bad']}" if r["bad"] else
                               "newer, not switched to" if r["pending"] else ""))
                 for r in rows]))
    if txn:
        print(f"switch in progress: {txn.from_id} -> {txn.to_id} ({txn.state})")
    return 0


def _switch(args, to: str | None = None) -> int:
    from hvsupervisor.release.switch import switch

    settings = load(args)
    store = _store(args, settings)
    if to is None:
        to = store.link("previous")
        if to is None:
            print("hvsupervisor: no previous release to roll back to", file=sys.stderr)
            return 1
        store.clear_bad(to)  # the operator chose it: a rollback target is not BAD
    sock = run_dir(args) / CONTROL_NAME
    timeout = args.timeout or settings.supervisor.upgrade_timeout
    outcome = switch(store, to, sock=sock, cli_dirs=dir_flags(args), timeout=timeout,
                     gate_command=settings.supervisor.upgrade_gate_command,
                     skip_precheck=args.skip_precheck)
    if outcome.switched:
        print(f"release {outcome.current} serves ({outcome.seconds:.1f} s; gate: "
              f"{outcome.gate})")
        return 0
    print(f"hvsupervisor: switch to {to} rolled back after {outcome.seconds:.1f} s: "
          f"{outcome.reason}; the node runs {outcome.current}; {to} is marked BAD",
          file=sys.stderr)
    return 1


def add_parser(sub) -> None:
    p = sub.add_parser("release", help="OpenStack release artifacts: build, install offline, "
                       "list, switch (gated, rolls back by itself), rollback")
    p.add_argument("--root", default=None,
                   help="release root (default: [supervisor] release_root, /opt/hvsupervisor)")
    rsub = p.add_subparsers(dest="release_verb", required=True, metavar="SUBCOMMAND")
    b = rsub.add_parser("build", help="build one artifact for a track (needs a package index)")
    b.add_argument("--track", required=True, help="2026.1 or 2026.2, or a site track name")
    b.add_argument("--source", default=".", help="the hvsupervisor checkout (default .)")
    b.add_argument("--output", default=".", help="directory for the artifact (default .)")
    b.add_argument("--python", default=None, help="the nodes' interpreter (/usr/bin/python3)")
    b.add_argument("--require", action="append", default=[],
                   help="a site track's requirement (repeat); default: the track's")
    b.add_argument("--constraints", default=None, help="a site track's pin file")
    b.add_argument("--format", choices=["table", "json"], default="table")
    i = rsub.add_parser("install", help="install an artifact with no package index")
    i.add_argument("file")
    i.add_argument("--python", default=None, help="the interpreter the venv is made from")
    ls = rsub.add_parser("list", help="current, previous and installed releases")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    for verb, text in (("switch", "switch to an installed release; rolls back by itself "
                        "if the node does not serve on it within upgrade_timeout"),
                       ("rollback", "switch back to the previous release (same gate)")):
        s = rsub.add_parser(verb, help=text)
        if verb == "switch":
            s.add_argument("id")
        s.add_argument("--timeout", type=float, default=None,
                       help="seconds for the gate (default [supervisor] upgrade_timeout)")
        s.add_argument("--skip-precheck", action="store_true",
                       help="do not run the new release's validate and check first")


def main(args: argparse.Namespace) -> int:
    from hvsupervisor.release.store import ReleaseError

    try:
        verb = args.release_verb
        if verb == "build":
            return _build(args)
        if verb == "install":
            return _install(args)
        if verb == "list":
            return _list(args)
        if verb == "switch":
            return _switch(args, args.id)
        return _switch(args, None)
    except ReleaseError as exc:
        print(f"hvsupervisor: {exc}", file=sys.stderr)
        return 1
