"""Releases and the switch transaction, as pure decisions (doc/release.md).

A release is one OpenStack track built into one artifact: hvsupervisor, nova,
neutron and every dependency pinned, described by its manifest. The node keeps
each installed release in a directory of its own and runs the one the
``current`` link names. A switch is a transaction (``Txn``) written before the
link moves; whoever finds one with nobody holding the switch lock (the
switching command died: SIGKILL, power loss) resolves it with ``recover``, so
the node always ends on exactly one release.

Pure: manifests in, decisions out. The files, links and locks are
release/store.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

MANIFEST_VERSION = 1
TXN_STATES = ("switching", "rolling-back")


@dataclass(frozen=True)
class Dist:
    name: str
    version: str
    sha256: str
    filename: str = ""


@dataclass(frozen=True)
class Release:
    """An installed (or built) release, from its manifest; ``bad`` is the reason a
    gate refused it ("" if none), which keeps it from being chosen by itself."""

    id: str
    track: str
    version: str  # hvsupervisor's own version
    built: str  # ISO 8601 UTC, when the artifact was built
    dists: tuple[Dist, ...] = ()
    bad: str = ""

    def dist_version(self, name: str) -> str:
        key = normalize(name)
        return next((d.version for d in self.dists if normalize(d.name) == key), "")

    def summary(self) -> str:
        parts = [f"track {self.track}", f"hvsupervisor {self.version}"]
        for name in ("nova", "neutron"):
            if v := self.dist_version(name):
                parts.append(f"{name} {v}")
        parts.append(f"{len(self.dists)} distributions, built {self.built}")
        return ", ".join(parts)

    def to_manifest(self) -> dict[str, Any]:
        return {"manifest_version": MANIFEST_VERSION, "id": self.id, "track": self.track,
                "hvsupervisor": self.version, "built": self.built,
                "distributions": [{"name": d.name, "version": d.version, "sha256": d.sha256,
                                   "filename": d.filename} for d in self.dists]}

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any], bad: str = "") -> Release:
        """Raises ValueError naming what is missing: a manifest is our own file, but an
        artifact may come from anywhere."""
        try:
            dists = tuple(Dist(d["name"], d["version"], d["sha256"], d.get("filename", ""))
                          for d in data["distributions"])
            return cls(id=str(data["id"]), track=str(data["track"]),
                       version=str(data["hvsupervisor"]), built=str(data["built"]),
                       dists=dists, bad=bad)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"manifest lacks {exc}") from None


def normalize(name: str) -> str:
    """PEP 503 name normalisation (oslo.config == oslo-config == oslo_config)."""
    out = name.lower()
    for ch in "._":
        out = out.replace(ch, "-")
    while "--" in out:
        out = out.replace("--", "-")
    return out


def release_id(track: str, version: str, lock_digest: str) -> str:
    """``2026.2-0.1.0-1a2b3c4d``: the track, our version, and the pinned set's digest,
    so two builds of the same pins have the same id and a changed pin a new one."""
    return f"{track}-{version}-{lock_digest[:8]}"


def id_problem(release: str) -> str | None:
    """Why ``release`` cannot name a release directory, or None."""
    if not release or release in (".", "..") or "/" in release or release.startswith("."):
        return f"not a release id: {release!r}"
    return None


@dataclass(frozen=True)
class Txn:
    """The switch in progress, written (fsync'd) before the link moves."""

    from_id: str
    to_id: str
    state: Literal["switching", "rolling-back"]
    reason: str = ""  # why a rollback runs

    def to_primitive(self) -> dict[str, str]:
        return {"from": self.from_id, "to": self.to_id, "state": self.state,
                "reason": self.reason}

    @classmethod
    def from_primitive(cls, data: Mapping[str, Any]) -> Txn:
        state = data.get("state")
        if state not in TXN_STATES or not data.get("from") or not data.get("to"):
            raise ValueError(f"not a switch transaction: {dict(data)!r}")
        return cls(str(data["from"]), str(data["to"]), state, str(data.get("reason", "")))


@dataclass(frozen=True)
class Recovery:
    """What to do about a transaction nobody is carrying out any more."""

    current: str  # the release the current link must name
    note: str  # for the journal: what happened, in one line
    clear: bool = True  # remove the transaction file


def recover(txn: Txn | None, current: str | None, installed: Iterable[str]) -> Recovery | None:
    """Resolve an interrupted switch to exactly one release.

    The rule is "back to where the switch started": a switch that did not finish
    was never proven to serve, and the old release was. Power loss during the
    gate, a SIGKILL of the switching command, or of the supervisor on the new
    code all land on the old release; the new one is not marked bad (nothing
    showed it cannot serve) and may be switched to again by the operator.
    If the old release is gone from disk (it cannot be: switch refuses to delete
    the previous one), the node stays where the link is.
    """
    if txn is None:
        return None
    have = set(installed)
    if txn.from_id not in have:
        return Recovery(current or txn.to_id,
                        f"interrupted switch {txn.from_id} -> {txn.to_id}: {txn.from_id} is "
                        f"not installed; staying on {current or txn.to_id}")
    what = "rollback" if txn.state == "rolling-back" else "switch"
    if current == txn.from_id:
        return Recovery(txn.from_id, f"interrupted {what} {txn.from_id} -> {txn.to_id}: the "
                        f"link had not moved (or was back); staying on {txn.from_id}")
    return Recovery(txn.from_id, f"interrupted {what} {txn.from_id} -> {txn.to_id}: back to "
                    f"{txn.from_id} (a switch that did not finish never proved it serves)")


def newest_pending(current: Release | None, installed: Sequence[Release]) -> Release | None:
    """The newest good release built after ``current``, if any: 'restart pending'."""
    if current is None:
        return None
    newer = [r for r in installed if r.id != current.id and not r.bad and r.built > current.built]
    return max(newer, key=lambda r: r.built, default=None)


@dataclass(frozen=True)
class GateView:
    """What the switch saw of the node at one look."""

    supervisor_up: bool
    release: str = ""  # the release the supervisor reports it runs
    node_ready: bool = False  # READY=1 went out
    agents: Mapping[str, str] = field(default_factory=dict)  # name -> "" if serving, else why
    gate_command: str | None = None  # None: not configured; "": passed; else why not


def gate(view: GateView, want: str) -> tuple[bool, str]:
    """(passed, the reason it has not) for one look at the node on release ``want``."""
    if not view.supervisor_up:
        return False, "the supervisor does not answer on its control socket"
    if view.release != want:
        return False, f"the supervisor runs {view.release or 'an unknown release'}, not {want}"
    waiting = {n: why for n, why in view.agents.items() if why}
    if waiting:
        return False, "; ".join(f"{n}: {why}" for n, why in sorted(waiting.items()))
    if not view.node_ready:
        return False, "READY=1 not sent yet"
    if view.gate_command:
        return False, f"upgrade_gate_command: {view.gate_command}"
    return True, ""
