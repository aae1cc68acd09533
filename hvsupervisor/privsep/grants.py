"""What the privsep broker allows: pure rules, no I/O.

A request arrives on the broker socket of one agent (``<run_dir>/privsep/
<agent>.sock``, owned by that agent's user, 0600). It is one of two verbs:

* ``privsep-helper --privsep_context CTX --privsep_sock_path PATH``: what
  oslo.privsep appends to ``helper_command`` (oslo_privsep/priv_context.py,
  ``helper_command()``). CTX must be one of the agent's own contexts; the
  broker adds the agent's own ``--config-file`` arguments, because a set
  ``helper_command`` gets none appended.
* ``root-helper ip netns exec NS [env K=V ...] PROG ARGS...``: neutron's
  ``[agent] root_helper`` prefix, used for the data-plane daemons it starts in
  a namespace (dnsmasq, haproxy, keepalived, radvd, conntrackd,
  neutron-keepalived-state-change). Nothing else.

Everything else is refused with a reason that the broker logs and that the
client reports (exit 126, "command cannot execute", as a shell would).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

REFUSED = 126  # sh(1): found but cannot execute

SOCK_NAME = "privsep.sock"  # oslo.privsep: <mkdtemp>/privsep.sock (daemon.py)

NETNS_PROGRAMS = frozenset({
    "dnsmasq", "haproxy", "keepalived", "radvd", "conntrackd",
    "neutron-keepalived-state-change",
})
# q-prefixed namespaces neutron names after a network/router uuid:
# qdhcp-<net>, qrouter-<router> (neutron/agent/linux/dhcp.py, l3/namespaces.py).
_NETNS_RE = re.compile(
    r"^q[a-z]+-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Only neutron's own variables: LD_PRELOAD, PYTHONPATH or PATH would let the
# caller choose the code that runs as root.
_ENV_KEY_RE = re.compile(r"^(NEUTRON_[A-Z0-9_]+|PROCESS_TAG)$")
_CONTEXT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass(frozen=True)
class Grant:
    """What one agent may ask the broker for; built from its plan."""

    agent: str
    uid: int
    gid: int
    contexts: frozenset[str]
    root_helper: bool
    config_args: tuple[str, ...]  # --config-file F ... exactly as the agent has them
    env: Mapping[str, str] = field(default_factory=dict)  # the plan's environment


@dataclass(frozen=True)
class Peer:
    """SO_PEERCRED of the connection, and whether the pid is the agent's tree."""

    pid: int
    uid: int
    gid: int
    in_agent_tree: bool


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    argv: tuple[str, ...] = ()  # argv[0] a bare name, resolved by the broker
    sock_path: str | None = None  # for privsep-helper: check its directory (I/O)


def refuse(reason: str) -> Decision:
    return Decision(False, reason)


def decide(grant: Grant, peer: Peer, verb: object, args: object) -> Decision:
    """Allow or refuse one request, before any filesystem check."""
    if peer.uid != grant.uid:
        return refuse(f"peer uid {peer.uid} is not {grant.agent}'s uid {grant.uid}")
    if not peer.in_agent_tree:
        return refuse(f"peer pid {peer.pid} is not in {grant.agent}'s process tree")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        return refuse("malformed request: args is not a list of strings")
    if any("\0" in a for a in args):
        return refuse("malformed request: NUL in an argument")
    if verb == "privsep-helper":
        return _privsep(grant, args)
    if verb == "root-helper":
        return _root_helper(grant, args)
    return refuse(f"unknown verb {verb!r}")


def _privsep(grant: Grant, args: Sequence[str]) -> Decision:
    if len(args) != 4 or args[0] != "--privsep_context" or args[2] != "--privsep_sock_path":
        return refuse("privsep-helper takes exactly --privsep_context CTX "
                      "--privsep_sock_path PATH")
    context, path = args[1], args[3]
    if not _CONTEXT_RE.match(context):
        return refuse(f"malformed privsep context {context!r}")
    if context not in grant.contexts:
        return refuse(f"privsep context {context} is not one of {grant.agent}'s "
                      f"({', '.join(sorted(grant.contexts)) or 'none'})")
    if not os.path.isabs(path) or os.path.normpath(path) != path:
        return refuse(f"socket path {path!r} is not a normalised absolute path")
    if os.path.basename(path) != SOCK_NAME:
        return refuse(f"socket path {path} is not named {SOCK_NAME}")
    argv = ("privsep-helper", *grant.config_args, "--privsep_context", context,
            "--privsep_sock_path", path)
    return Decision(True, f"privsep context {context}", argv, sock_path=path)


def _root_helper(grant: Grant, args: Sequence[str]) -> Decision:
    if not grant.root_helper:
        return refuse(f"{grant.agent} has no root_helper grant")
    if list(args[:3]) != ["ip", "netns", "exec"] or len(args) < 5:
        return refuse("root-helper allows only: ip netns exec NS [env K=V ...] PROG ...")
    ns = args[3]
    if not _NETNS_RE.match(ns):
        return refuse(f"namespace {ns!r} is not a neutron q*-<uuid> namespace")
    rest = list(args[4:])
    if rest[0] == "env":
        rest.pop(0)
        while rest and "=" in rest[0]:
            key = rest[0].split("=", 1)[0]
            if not _ENV_KEY_RE.match(key):
                return refuse(f"environment variable {key!r} is not allowed")
            rest.pop(0)
    if not rest:
        return refuse("no program after ip netns exec")
    prog = rest[0]
    if prog not in NETNS_PROGRAMS:
        return refuse(f"program {prog!r} is not one of {', '.join(sorted(NETNS_PROGRAMS))}")
    return Decision(True, f"ip netns exec {ns} {prog}", tuple(args))


def sock_dir_problem(mode: int, owner: int, is_dir: bool, caller_uid: int) -> str | None:
    """Why the socket's directory is not the caller's private 0700 dir, or None.

    ``mode``/``owner``/``is_dir`` come from an lstat of the directory (no
    symlink followed). The directory is oslo.privsep's ``tempfile.mkdtemp()``:
    0700 and owned by the agent's user.
    """
    if not is_dir:
        return "socket directory is not a directory (or is a symlink)"
    if owner != caller_uid:
        return f"socket directory is owned by uid {owner}, not the caller's {caller_uid}"
    if mode & 0o7777 != 0o700:
        return f"socket directory mode is {mode & 0o7777:04o}, not 0700"
    return None


def grant_for(plan) -> Grant | None:
    """What the broker allows this plan's agent; None when it runs as root."""
    ident = plan.identity
    if ident is None:
        return None
    config_args: list[str] = []
    for f in plan.files:
        config_args += ["--config-file", f.path]
    return Grant(agent=plan.agent, uid=ident.uid, gid=ident.gid,
                 contexts=frozenset(plan.privsep_contexts), root_helper=plan.root_helper,
                 config_args=tuple(config_args), env=dict(plan.env))
