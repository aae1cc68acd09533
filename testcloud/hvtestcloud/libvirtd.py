"""A private libvirtd (+ virtlogd): for the functional/e2e tests and the demo node.

Why a mount namespace: a root libvirtd keeps its state in /run/libvirt,
/var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt and /etc/libvirt, and
only one may own them per host. Ours runs in a private mount namespace where
those paths are a tmpfs or bind mounts of a private dir, and listens on a
socket there (``unix_sock_dir``), reached as ``qemu+unix:///system?socket=...``.
Nothing of the host's libvirt state is touched except /dev/kvm's mode
(``chgrp kvm /dev/kvm; chmod 0660 /dev/kvm``, without which every start
re-probes qemu for 10-16 s).

virtlogd is the namespace holder: ``unshare --mount`` execs a tiny sh that
mounts and execs virtlogd in the foreground; libvirtd is then started and
restarted inside that namespace with ``nsenter -t <virtlogd> -m``. Both execs
keep the pid, so we signal exactly the processes we started. With ``netns``
both also live in that network namespace, so the taps libvirt makes for a
VM are where the node's OVS and nova-compute are.

The qemu capabilities cache is kept between runs in ``cache_keep`` (libvirt
validates it itself), so only the first run pays the cold start (about 8.5 s;
warm restarts take about 0.2 s).
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pathlib
import shutil
import signal
import subprocess
import time

from hvtestcloud.waiting import wait_until

CACHE_KEEP = pathlib.Path("/var/tmp/hvsupervisor-tests/libvirt-cache")

# Mount the private state dirs, then become virtlogd (foreground, same pid).
_HOLDER_SCRIPT = """set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mount --bind "$1/lib" /var/lib/libvirt
mount --bind "$1/cache" /var/cache/libvirt
mount --bind "$1/log" /var/log/libvirt
mount --bind "$1/etc" /etc/libvirt
exec virtlogd
"""


def fix_kvm_permissions() -> str:
    """Make /dev/kvm usable by libvirt-qemu (host-global; doc/upstream-behaviour.md section 11)."""
    kvm = pathlib.Path("/dev/kvm")
    if not kvm.exists():
        return "no /dev/kvm"
    try:
        os.chown(kvm, -1, grp.getgrnam("kvm").gr_gid)
        os.chmod(kvm, 0o660)
    except (KeyError, OSError) as exc:
        return f"could not fix /dev/kvm: {exc}"
    return "ok"


@dataclasses.dataclass
class LibvirtDaemon:
    """One private libvirtd; ``stop``/``kill``/``start`` for outage tests."""

    root: pathlib.Path
    # Where the qemu capabilities cache is kept between runs (libvirt validates it).
    cache_keep: pathlib.Path = CACHE_KEEP
    # A network namespace (name under /run/netns) for libvirtd and its qemu:
    # a VM's tap must be made where the node's OVS and nova-compute are.
    netns: str | None = None
    # qemu as root: a VM's files live under root-only trees (pytest's
    # /tmp/pytest-of-root is 0700, the demo dir 0750), which Debian's
    # libvirt-qemu user cannot traverse ("Cannot access storage file ...
    # (as uid:64055, gid:64055): Permission denied"). Only this private
    # libvirtd is affected; a node's own libvirtd keeps its packaging.
    qemu_as_root: bool = False
    # The group of libvirtd's sockets (0770). root: only root agents connect
    # (the demo's). "libvirt": nova-compute run as nova (supplementary group
    # libvirt in the shipped catalog, doc/upstream-behaviour.md section 15)
    # connects too, as to Debian's packaged libvirtd; its socket dir must then
    # be searchable by nova (``root`` not under a 0700 dir).
    sock_group: str = "root"
    # An address to listen on with qemu+tcp (port 16509, auth none: tests only;
    # README "Live migration" has the production TLS setup). Empty: unix only.
    tcp_address: str = ""
    holder: subprocess.Popen[bytes] | None = None
    proc: subprocess.Popen[bytes] | None = None
    timings: list[tuple[str, float]] = dataclasses.field(default_factory=list)

    @property
    def socket(self) -> pathlib.Path:
        return self.root / "sock" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def tcp_uri(self) -> str:
        """The migration URI of this libvirtd (nova's qemu+tcp rule), if it listens on tcp."""
        return f"qemu+tcp://{self.tcp_address}/system" if self.tcp_address else ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def setup(self) -> None:
        for d in ("lib", "cache", "log", "etc", "sock"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        shutil.copytree("/etc/libvirt", self.root / "etc", dirs_exist_ok=True)
        if self.cache_keep.is_dir():
            shutil.copytree(self.cache_keep, self.root / "cache", dirs_exist_ok=True)
        if self.qemu_as_root:
            with open(self.root / "etc" / "qemu.conf", "a") as conf:
                conf.write('\nuser = "root"\ngroup = "root"\n')
        (self.root / "libvirtd.conf").write_text(
            f'unix_sock_dir = "{self.root / "sock"}"\n'
            f'unix_sock_group = "{self.sock_group}"\n'
            'unix_sock_ro_perms = "0770"\n'
            'unix_sock_rw_perms = "0770"\n'
            'auth_unix_ro = "none"\n'
            'auth_unix_rw = "none"\n'
            + (f'listen_tcp = 1\nlisten_tls = 0\nlisten_addr = "{self.tcp_address}"\n'
               'tcp_port = "16509"\nauth_tcp = "none"\n' if self.tcp_address else "")
        )
        with open(self.root / "virtlogd.out", "ab") as log:
            net = ["nsenter", f"--net=/run/netns/{self.netns}", "--"] if self.netns else []
            self.holder = subprocess.Popen(
                [*net, "unshare", "--mount", "--propagation", "private", "--",
                 "/bin/sh", "-c", _HOLDER_SCRIPT, "sh", str(self.root)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        ns = f"/proc/{self.holder.pid}/exe"
        # The holder is ready once it has exec'd virtlogd inside the namespace.
        wait_until(
            lambda: self.holder.poll() is not None or os.readlink(ns).endswith("virtlogd"),
            10, "virtlogd namespace holder", 0.05,
        )
        if self.holder.poll() is not None:
            raise RuntimeError(
                "namespace holder exited: " + (self.root / "virtlogd.out").read_text()[-500:]
            )

    def start(self, timeout: float = 60.0) -> float:
        """Start libvirtd and wait until it answers; returns seconds taken."""
        assert self.holder is not None and self.pid is None
        t0 = time.monotonic()
        with open(self.root / "libvirtd.out", "ab") as log:
            self.proc = subprocess.Popen(
                ["nsenter", "-t", str(self.holder.pid), "-m", *(["-n"] if self.netns else []),
                 "--",
                 "libvirtd", *(["--listen"] if self.tcp_address else []),
                 "--config", str(self.root / "libvirtd.conf"),
                 "--pid-file", str(self.root / "libvirtd.pid")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        wait_until(lambda: self.proc.poll() is not None or self._answers(), timeout,
                   "libvirtd answering", 0.2)
        if self.proc.poll() is not None:
            raise RuntimeError(
                "libvirtd exited: " + (self.root / "libvirtd.out").read_text()[-800:]
            )
        took = time.monotonic() - t0
        self.timings.append(("start", took))
        return took

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        res = subprocess.run(["virsh", "-c", self.uri, "version"], capture_output=True,
                             timeout=60, check=False)
        return res.returncode == 0

    def destroy_domains(self) -> list[str]:
        """Power off every running domain (its qemu exits, its tap goes); their names.

        libvirtd stopping leaves its qemu processes running, so a teardown
        that must leave no process ends the domains first.
        """
        if self.pid is None:
            return []
        r = subprocess.run(["virsh", "-c", self.uri, "list", "--name"], capture_output=True,
                           text=True, timeout=60, check=False)
        names = r.stdout.split() if r.returncode == 0 else []
        for name in names:
            subprocess.run(["virsh", "-c", self.uri, "destroy", name], capture_output=True,
                           timeout=60, check=False)
        return names

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal our libvirtd (SIGKILL for a crash) and reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def teardown(self) -> None:
        self.stop()
        if self.holder is not None and self.holder.poll() is None:
            self.holder.terminate()
            try:
                self.holder.wait(10)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait(5)
        try:
            self.cache_keep.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copytree(self.root / "cache", self.cache_keep, dirs_exist_ok=True)
        except OSError:
            pass


def missing() -> str | None:
    """What this host lacks for a private libvirtd, as one line; None if nothing."""
    if os.geteuid() != 0:
        return "private libvirtd needs root (mount namespace, /dev/kvm)"
    for tool in ("libvirtd", "virtlogd", "virsh", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install libvirt-daemon-system util-linux)"
    for path in ("/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt", "/etc/libvirt"):
        if not os.path.isdir(path):
            return f"{path} missing (libvirt-daemon-system not installed?)"
    return None
