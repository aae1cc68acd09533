"""``hvsupervisor check``'s host rows: each check returns what it saw, once.

Every function takes plain values (a URI, ovsdb settings, paths), so the lead
can feed them from the effective configuration and tests can feed them faults.
A row is ``ok`` (fine), ``warn`` (works, but an operator should know) or
``fail`` (an agent will not work). The only host change made is a uniquely
named network namespace, created and always deleted again.
"""

from __future__ import annotations

import dataclasses
import fcntl
import grp
import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterable, Sequence
from typing import Literal

from hvsupervisor.config import layers
from hvsupervisor.host.libvirt import LibvirtGate
from hvsupervisor.host.ovsdb import OvsdbGate

Status = Literal["ok", "warn", "fail"]

KVM_DEVICE = "/dev/kvm"
_KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO=0xAE, 0x00); the stable API answers 12


@dataclasses.dataclass(frozen=True)
class CheckRow:
    name: str
    status: Status
    detail: str


def check_libvirt(uri: str, timeout: float = 30.0) -> CheckRow:
    """libvirtd at ``uri`` answers and reports its hypervisor (via the gate's probe)."""
    st = LibvirtGate(uri, probe_timeout=timeout).probe()
    return CheckRow("libvirt", "ok" if st.open else "fail", st.reason)


def check_kvm(device: str = KVM_DEVICE) -> CheckRow:
    """KVM is optional (TCG works), so every problem here is a warning."""
    try:
        st = os.stat(device)
    except FileNotFoundError:
        return CheckRow("kvm", "warn", f"{device} absent: guests run with TCG (slow)")
    except OSError as exc:
        return CheckRow("kvm", "warn", f"{device}: {exc.strerror}")
    if not stat.S_ISCHR(st.st_mode):
        return CheckRow("kvm", "warn", f"{device} is not a character device")
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return CheckRow("kvm", "warn", f"{device}: cannot open: {exc.strerror}: TCG only")
    try:
        api = fcntl.ioctl(fd, _KVM_GET_API_VERSION)
    except OSError as exc:
        return CheckRow("kvm", "warn", f"{device}: KVM_GET_API_VERSION failed: {exc.strerror}")
    finally:
        os.close(fd)
    mode = stat.S_IMODE(st.st_mode)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    if not (group == "kvm" and mode & 0o060 == 0o060):
        # doc/upstream-behaviour.md section 11: without this libvirtd re-probes qemu on every start.
        return CheckRow(
            "kvm", "warn",
            f"{device} is group {group} mode {mode:04o}: the qemu user cannot use it and "
            f"libvirtd re-probes qemu at each start (chgrp kvm {device}; chmod 0660 {device})",
        )
    return CheckRow("kvm", "ok", f"{device} usable (KVM API {api}, group kvm, mode {mode:04o})")


def check_ovsdb(
    remote: str, bridges: Sequence[str], ensure: bool = False, timeout: float = 5.0
) -> list[CheckRow]:
    """Two rows: can we talk to ovsdb, and do the mapped bridges exist."""
    st = OvsdbGate(remote, list(bridges), connect_timeout=timeout).probe()
    missing = st.details.get("missing")
    if missing is None:  # never got to the bridges
        if st.open:
            return [CheckRow("ovsdb", "ok", st.reason),
                    CheckRow("bridges", "ok", "no bridges required")]
        return [CheckRow("ovsdb", "fail", st.reason),
                CheckRow("bridges", "warn", "not checked: ovsdb unreachable")]
    ovsdb_row = CheckRow("ovsdb", "ok", f"ovsdb {remote}: connected")
    if not missing:
        required = ", ".join(bridges) if bridges else "none required"
        return [ovsdb_row, CheckRow("bridges", "ok", f"present: {required}")]
    names = ", ".join(missing)
    label = "bridge" if len(missing) == 1 else "bridges"
    if ensure:
        return [ovsdb_row, CheckRow("bridges", "warn",
                                    f"missing {label} {names} (created at start: ensure_bridges)")]
    return [ovsdb_row, CheckRow("bridges", "fail", f"missing {label} {names}")]


def check_netns() -> CheckRow:
    """Create and delete a uniquely named netns (the l3/dhcp agents need netns)."""
    ip = shutil.which("ip")
    if ip is None:
        return CheckRow("netns", "fail", "ip (iproute2) not found")
    name = f"hvcheck-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        add = subprocess.run([ip, "netns", "add", name], capture_output=True, text=True,
                             timeout=10, check=False)
        if add.returncode != 0:
            return CheckRow("netns", "fail", f"ip netns add: {add.stderr.strip()}")
        return CheckRow("netns", "ok", "ip netns add/delete works")
    finally:
        subprocess.run([ip, "netns", "delete", name], capture_output=True, timeout=10,
                       check=False)


def check_dir(label: str, path: str) -> CheckRow:
    """A state/log/run dir: fine, or missing (warn), or unsafe/unusable (fail)."""
    name = f"dir {label}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return CheckRow(name, "warn", f"{path} missing (it will be created)")
    except OSError as exc:
        return CheckRow(name, "fail", f"{path}: {exc.strerror}")
    if not stat.S_ISDIR(st.st_mode):
        return CheckRow(name, "fail", f"{path} is not a directory")
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IWOTH:
        return CheckRow(name, "fail", f"{path} is world-writable (mode {mode:04o})")
    if not os.access(path, os.W_OK | os.X_OK):
        return CheckRow(name, "fail", f"{path} is not writable by uid {os.geteuid()}")
    return CheckRow(name, "ok", f"{path} (mode {mode:04o})")


def ignored_conf_files(directory: str) -> list[str]:
    """Entries oslo.config skips, by the very rule plan and reload use
    (``layers.oslo_selects``: oslo's ``glob('<dir>/*.conf')``)."""
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [n for n in names if not layers.oslo_selects(n)]


def check_confd(directory: str) -> list[CheckRow]:
    """One warn row per entry in a conf.d dir that oslo.config would not read."""
    rows = []
    for n in ignored_conf_files(directory):
        path = os.path.join(directory, n)
        why = "a dotfile" if n.startswith(".") else "not *.conf"
        rows.append(CheckRow("conf.d", "warn", f"{path} is ignored by oslo.config ({why})"))
    return rows


DB_OPTIONS = ("database", "api_database")


def check_nova_db(metadata: dict[str, str | None] | None,
                  compute: dict[str, str | None] | None) -> list[CheckRow]:
    """Database credentials reach only the agent that needs them.

    Each argument maps ``database``/``api_database`` to where its
    ``connection`` is set in that agent's effective config ("file:line"), or
    None; an agent not enabled is None. nova-api-metadata cannot boot without
    one (nova's ``raise_if_old_compute``: "No sql_connection parameter is
    established"); nova-compute must not have either (compute reaches the DB
    only through nova-conductor). Values are never shown: they hold passwords.
    """
    rows = []
    if metadata is not None:
        found = [f"[{s}] connection ({w})" for s in DB_OPTIONS if (w := metadata.get(s))]
        if found:
            rows.append(CheckRow("nova db", "ok", "nova-api-metadata has " + ", ".join(found)))
        else:
            rows.append(CheckRow(
                "nova db", "fail",
                "nova-api-metadata has no [database] or [api_database] connection: it "
                "cannot start; put them in nova/nova-api-metadata.conf.d/50-db.conf "
                "(read by that agent only)"))
    if compute is not None:
        found = [f"[{s}] connection ({w})" for s in DB_OPTIONS if (w := compute.get(s))]
        if found:
            rows.append(CheckRow(
                "nova-compute db", "warn",
                "nova-compute's config carries " + ", ".join(found) + ": compute needs no "
                "database credentials; move them to nova/nova-api-metadata.conf.d"))
    return rows


def run_checks(
    *,
    libvirt_uri: str | None = None,
    ovsdb: tuple[str, Sequence[str]] | None = None,
    ensure_bridges: bool = False,
    kvm: bool = True,
    netns: bool = True,
    dirs: Iterable[tuple[str, str]] = (),
    confd_dirs: Iterable[str] = (),
) -> list[CheckRow]:
    """All host rows in a stable order. ``None``/False skips a check (agent not enabled).

    ``ovsdb`` is ``(remote, bridges)``, e.g. the first two items of
    ``ovsdb_settings(lookup)``; ``dirs`` pairs a label with a path
    (``("state_dir", "/var/lib/hvsupervisor")``).
    """
    rows: list[CheckRow] = []
    if libvirt_uri is not None:
        rows.append(check_libvirt(libvirt_uri))
    if kvm:
        rows.append(check_kvm())
    if ovsdb is not None:
        rows.extend(check_ovsdb(ovsdb[0], ovsdb[1], ensure=ensure_bridges))
    if netns:
        rows.append(check_netns())
    rows.extend(check_dir(label, path) for label, path in dirs)
    for d in confd_dirs:
        rows.extend(check_confd(d))
    return rows


def all_ok(rows: Iterable[CheckRow]) -> bool:
    """``check`` exits non-zero iff some row failed (warnings pass)."""
    return all(r.status != "fail" for r in rows)
