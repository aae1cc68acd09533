"""Switch the node to another release, as a transaction decided by the node serving.

1. The new release's own ``config validate`` and ``check`` run against the
   node's live config (the same layer dirs as the running supervisor): new
   code may refuse an option the old accepted, and then nothing changes.
2. The journal (store.py ``switch.json``) records the switch, the ``current``
   link moves (one rename), and the running supervisor is asked to re-exec
   from the link (control verb ``reexec``): its agents stop, the data plane
   (dnsmasq, haproxy, keepalived; VMs are libvirt's) is left alone, and the
   same pid comes back on the new code and starts the agents again.
3. The gate (core/release_model.gate) is looked at until it passes or
   ``[supervisor] upgrade_timeout`` runs out: the supervisor runs the new
   release, every agent is ready and not degraded, its health probe is not
   failing, READY=1 went out, and the site's ``upgrade_gate_command`` (if set)
   exits 0.
4. A failed gate marks the release BAD (with the reason), moves the link back,
   re-execs the supervisor onto the old code and waits for it to serve again.
An interrupted switch is resolved by ``recover`` (core/release_model.recover),
which ``hvsupervisor run`` calls before anything starts.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hvsupervisor.control.client import ControlError, call
from hvsupervisor.core.release_model import GateView, Txn, gate, recover
from hvsupervisor.release.artifact import clean_env
from hvsupervisor.release.store import ReleaseError, ReleaseStore

LOG = logging.getLogger("hvsupervisor.release")
POLL = 1.0  # seconds between looks at the node during a gate


@dataclass
class Outcome:
    current: str
    switched: bool
    reason: str = ""  # why a rollback happened
    seconds: float = 0.0
    gate: str = ""  # what the gate checked, in words


def _status(sock: Path) -> dict | None:
    try:
        return call(sock, {"cmd": "status"}, timeout=10)
    except (ControlError, OSError):
        return None


def _view(sock: Path, gate_command: Sequence[str], env: dict[str, str]) -> GateView:
    st = _status(sock)
    if st is None:
        return GateView(supervisor_up=False)
    agents = {}
    for a in st.get("agents", ()):
        why = ""
        health = (a.get("health") or {}).get("label", "")
        if not a.get("ready"):
            why = a.get("state", "?") + (f" ({a['reason']})" if a.get("reason") else "")
            if a.get("last_exit") and a.get("state") in ("failed", "backoff"):
                why += f", last exit: {a['last_exit']}"
        elif a.get("degraded"):
            why = f"degraded ({a.get('reason', '')})"
        elif str(health).startswith("failing"):
            why = f"health probe {health}"
        agents[a.get("name", "?")] = why
    view = GateView(supervisor_up=True, release=st.get("release", ""),
                    node_ready=bool(st.get("ready")), agents=agents)
    if gate_command and view.release and not any(agents.values()) and view.node_ready:
        r = subprocess.run(list(gate_command), capture_output=True, text=True, env=env,
                           timeout=120, check=False)
        out = (r.stdout + r.stderr).strip().splitlines()
        view = GateView(True, view.release, True, agents,
                        "" if r.returncode == 0 else
                        f"exit {r.returncode}" + (f": {out[-1]}" if out else ""))
    return view


def wait_serving(sock: Path, want: str, timeout: float, gate_command: Sequence[str] = (),
                 host: str = "", clock: Callable[[], float] = time.monotonic) -> tuple[bool, str]:
    """Look at the node until the gate passes for release ``want`` or ``timeout`` ends."""
    env = {**os.environ, "HVSUP_RELEASE": want, "HVSUP_HOST": host}
    deadline = clock() + timeout
    why = "not looked at yet"
    while True:
        view = _view(sock, gate_command, env)
        ok, why = gate(view, want)
        if ok:
            return True, ""
        if view.release == want and any(w.startswith("failed") for w in view.agents.values()):
            return False, f"an agent gave up on {want}: {why}"  # no point waiting longer
        if clock() >= deadline:
            return False, f"not serving within {timeout:.0f} s: {why}"
        time.sleep(POLL)  # a poll of another process's state: no event to wait on


def reexec(sock: Path) -> bool:
    """Ask the running supervisor to come back from the current link; False if none runs."""
    try:
        reply = call(sock, {"cmd": "reexec"}, timeout=30)
    except (ControlError, OSError):
        return False
    return bool(reply.get("ok"))


def _check_failures(exe: Path, cli_dirs: Sequence[str]) -> dict[str, str] | str:
    """``check``'s failing rows by name (name -> detail), or its own error text."""
    r = subprocess.run([str(exe), *cli_dirs, "check", "--format", "json"],
                       capture_output=True, text=True, timeout=300, check=False, env=clean_env())
    try:
        rows = json.loads(r.stdout)["checks"]
    except (ValueError, KeyError, TypeError):
        return (r.stderr or r.stdout).strip() or f"exit {r.returncode}"
    return {row["name"]: row.get("detail", "") for row in rows if row.get("status") == "fail"}


def precheck(store: ReleaseStore, release: str, cli_dirs: Sequence[str],
             current: str | None = None) -> None:
    """The new release's own ``config validate`` and ``check`` on the live config;
    ReleaseError if the new code refuses (its own words: the file:line, the rows).

    A check row that fails for the running release too is a fact about the host
    (libvirtd not listening for migrations, say), not the new code's refusal: the
    switch does not make it worse, so only rows that fail on the new release alone
    refuse it; the others are said in the switch's output.
    """
    exe = store.path(release) / "bin" / "hvsupervisor"
    r = subprocess.run([str(exe), *cli_dirs, "config", "validate"], capture_output=True,
                       text=True, timeout=300, check=False, env=clean_env())
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
        raise ReleaseError(f"release {release} refuses this node's config (config validate, "
                           f"exit {r.returncode}); nothing changed:\n  " + "\n  ".join(lines[-12:]))
    new = _check_failures(exe, cli_dirs)
    old: dict[str, str] | str = {}
    if current is not None:
        old = _check_failures(store.path(current) / "bin" / "hvsupervisor", cli_dirs)
    if isinstance(new, str):
        raise ReleaseError(f"release {release}: check did not run ({new}); nothing changed")
    only_new = {n: d for n, d in new.items() if not isinstance(old, dict) or n not in old}
    if only_new:
        raise ReleaseError(f"release {release} fails checks the running release passes; "
                           "nothing changed:\n  "
                           + "\n  ".join(f"{n}: {d}" for n, d in sorted(only_new.items())))
    for name, detail in sorted(new.items()):
        LOG.warning("event=release-precheck release=%s check %r fails on the running release "
                    "too (a host fact, not the new code): %s", release, name, detail)


def recover_interrupted(store: ReleaseStore, log: Callable[[str], None] = LOG.warning) -> bool:
    """Resolve a switch whose command died (nobody holds the lock); True if the
    current link moved (the caller, a supervisor, then re-execs onto it)."""
    if store.switcher_alive():
        return False
    txn = store.read_txn()
    if txn is None:
        return False
    current = store.link("current")
    rec = recover(txn, current, (r.id for r in store.installed()))
    assert rec is not None
    moved = rec.current != current
    if moved:
        store.set_link("current", rec.current)
    store.clear_txn()
    log(f"event=release-recover {rec.note}")
    return moved


def switch(store: ReleaseStore, to: str, *, sock: Path, cli_dirs: Sequence[str],
           timeout: float, gate_command: Sequence[str] = (), host: str = "",
           skip_precheck: bool = False, out: Callable[[str], None] = print) -> Outcome:
    t0 = time.monotonic()
    with store.switch_lock():
        recover_interrupted(store, out)
        store.require(to)
        current = store.link("current")
        if current == to:
            raise ReleaseError(f"release {to} is current already")
        if not skip_precheck:
            precheck(store, to, cli_dirs, current)
        what = ("READY, every agent ready and its health probe not failing, "
                + ("upgrade_gate_command" if gate_command else "control plane not checked "
                   "(no [supervisor] upgrade_gate_command)"))
        if current is None:  # the first release on this node: nothing to gate against
            store.set_link("current", to)
            return Outcome(to, True, seconds=time.monotonic() - t0, gate="none (first release)")
        store.write_txn(Txn(current, to, "switching"))
        store.set_link("current", to)
        out(f"switched the link {current} -> {to}; restarting the agents onto it")
        if not reexec(sock):
            store.set_link("previous", current)
            store.clear_txn()
            return Outcome(to, True, "", time.monotonic() - t0,
                           "none: no supervisor running (the next start runs the new release)")
        ok, why = wait_serving(sock, to, timeout, gate_command, host)
        if ok:
            store.set_link("previous", current)
            store.clear_txn()
            return Outcome(to, True, "", time.monotonic() - t0, what)
        out(f"gate failed: {why}; rolling back to {current}")
        store.mark_bad(to, why)
        store.write_txn(Txn(current, to, "rolling-back", why))
        store.set_link("current", current)
        reexec(sock)
        ok_old, why_old = wait_serving(sock, current, timeout, (), host)
        store.clear_txn()
        reason = why if ok_old else f"{why}; the old release does not serve either: {why_old}"
        return Outcome(current, False, reason, time.monotonic() - t0, what)
