"""The installed releases on disk, the current/previous links and the switch journal.

    <root>/releases/<id>/                 a venv built by the node's own python3
    <root>/releases/<id>/hvsupervisor-release.json   its manifest, written last
    <root>/releases/<id>/BAD              why a gate refused it (absent: good)
    <root>/current -> releases/<id>       what the unit runs
    <root>/previous -> releases/<id>      what ``release rollback`` returns to
    <root>/switch.json                    the switch in progress (core/release_model.Txn)
    <root>/switch.lock                    held (flock) by the command carrying it out

Every change is crash-safe on its own: a link moves by symlink(2) to a temporary
name and rename(2) over the old one (the kernel swaps it whole), the journal is
written to a temporary file, fsync'd and renamed, and the directory is fsync'd
after each, so after a power loss each is either the old or the new.
A release directory without its manifest is a half-done install, never listed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from hvsupervisor.core.release_model import Release, Txn, id_problem

MANIFEST = "hvsupervisor-release.json"
BAD = "BAD"
LINKS = ("current", "previous")


class ReleaseError(Exception):
    """An operator-facing refusal: the message says what and why, in one line."""


def running_release() -> Release | None:
    """The release this interpreter belongs to (its venv's manifest), if any."""
    path = Path(sys.prefix) / MANIFEST
    try:
        return Release.from_manifest(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` whole or not at all (temp file, fsync, rename, fsync the dir)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class ReleaseStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.releases = self.root / "releases"

    # ------------------------------------------------------------ releases
    def path(self, release_id: str) -> Path:
        problem = id_problem(release_id)
        if problem:
            raise ReleaseError(problem)
        return self.releases / release_id

    def get(self, release_id: str) -> Release | None:
        d = self.path(release_id)
        try:
            data = json.loads((d / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ReleaseError(f"{d / MANIFEST}: unreadable manifest: {exc}") from None
        try:
            bad = (d / BAD).read_text().strip() or "refused"
        except FileNotFoundError:
            bad = ""
        try:
            return Release.from_manifest(data, bad=bad)
        except ValueError as exc:
            raise ReleaseError(f"{d / MANIFEST}: {exc}") from None

    def require(self, release_id: str) -> Release:
        rel = self.get(release_id)
        if rel is None:
            known = ", ".join(r.id for r in self.installed()) or "none"
            raise ReleaseError(f"release {release_id!r} is not installed in {self.releases} "
                               f"(installed: {known})")
        return rel

    def installed(self) -> list[Release]:
        """Complete installs (manifest present), oldest build first."""
        try:
            names = sorted(p.name for p in self.releases.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if id_problem(name):
                continue
            with contextlib.suppress(ReleaseError):
                if (rel := self.get(name)) is not None:
                    found.append(rel)
        return sorted(found, key=lambda r: (r.built, r.id))

    def mark_bad(self, release_id: str, reason: str) -> None:
        write_atomic(self.path(release_id) / BAD, (reason.strip() + "\n").encode())

    def clear_bad(self, release_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path(release_id) / BAD).unlink()

    # ------------------------------------------------------------ links
    def link(self, name: str) -> str | None:
        """The release id ``name`` (current/previous) points at, or None."""
        try:
            target = os.readlink(self.root / name)
        except (FileNotFoundError, OSError):
            return None
        return Path(target).name or None

    def set_link(self, name: str, release_id: str) -> None:
        """Point ``name`` at ``release_id`` in one rename(2)."""
        assert name in LINKS
        self.path(release_id)  # validates the id
        tmp = self.root / f".{name}.new"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(f"releases/{release_id}", tmp)
        os.replace(tmp, self.root / name)
        _fsync_dir(self.root)

    # ------------------------------------------------------------ the journal
    @property
    def txn_path(self) -> Path:
        return self.root / "switch.json"

    def read_txn(self) -> Txn | None:
        try:
            return Txn.from_primitive(json.loads(self.txn_path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            # A torn journal cannot exist (write_atomic); anything else is not ours.
            raise ReleaseError(f"{self.txn_path}: {exc}") from None

    def write_txn(self, txn: Txn) -> None:
        write_atomic(self.txn_path, json.dumps(txn.to_primitive()).encode())

    def clear_txn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.txn_path.unlink()
        _fsync_dir(self.root)

    @contextlib.contextmanager
    def switch_lock(self) -> Iterator[None]:
        """Held for a whole switch; a second switch is refused, not queued."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "switch.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    raise ReleaseError("another release switch is running on this node") \
                        from None
                raise
            yield
        finally:
            os.close(fd)

    def switcher_alive(self) -> bool:
        """True while some command holds the switch lock (carries a switch out)."""
        path = self.root / "switch.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops the lock we may have taken
        return False
