"""Can this node receive a live migration? The decision, from facts already gathered.

Pure: nova-compute's migration options (``MigrationConfig``) and what the
probe saw on this host (``MigrationFacts``, host/migration_probe.py) in, one
verdict out: ``ok``, ``warn`` or ``fail`` with the one reason an operator acts
on. The rules mirror nova 34's (doc/upstream-behaviour.md section 17): the
source of a live migration opens ``qemu+<scheme>://<target>/system`` to this
node's libvirtd, where the target is this node's
``[libvirt] live_migration_inbound_addr`` or, unset, its ``[DEFAULT] host``;
and, unless tunnelled, the guest's memory goes to a qemu listening on this
node on a port of libvirt's ``migration_port_min``..``migration_port_max``.

The scheme is a *source* option: the check assumes the peers run the same
nova configuration as this node (they do when they share the shipped
defaults and the site snippets), and says so in the verdict.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

Status = Literal["ok", "warn", "fail"]

# nova's LibvirtDriver._live_migration_uri: the URI template per virt_type.
_URI_BY_VIRT_TYPE = {
    "kvm": "qemu+{scheme}://{dest}/system",
    "qemu": "qemu+{scheme}://{dest}/system",
    "parallels": "parallels+tcp://{dest}/system",
}
# libvirtd's default ports (libvirtd.conf tcp_port/tls_port, libvirtd-tcp.socket,
# libvirtd-tls.socket); a migration URI names no port, so the defaults are what
# the source connects to. ssh: the peer's sshd.
DEFAULT_PORTS = {"tcp": 16509, "tls": 16514, "ssh": 22, "libssh": 22, "libssh2": 22}
# libvirt's qemu.conf migration_port_min/max defaults.
DEFAULT_PORT_RANGE = (49152, 49215)
# What qemu needs for native TLS in its migrate (or default) x509 directory.
QEMU_TLS_FILES = ("ca-cert.pem", "server-cert.pem", "server-key.pem")
TRUTHY = {"true", "1", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class MigrationConfig:
    """nova-compute's effective migration options (values as oslo resolved them)."""

    virt_type: str = "kvm"
    scheme: str | None = None           # [libvirt] live_migration_scheme (None: tcp)
    uri_template: str | None = None     # [libvirt] live_migration_uri (deprecated)
    inbound_addr: str | None = None     # [libvirt] live_migration_inbound_addr
    host: str = ""                      # [DEFAULT] host
    native_tls: bool = False            # [libvirt] live_migration_with_native_tls
    tunnelled: bool = False             # [libvirt] live_migration_tunnelled
    # [libvirt] migration_inbound_addr (cold migration, resize; default $my_ip,
    # "%s" = the host name): where sources copy disks to over ssh.
    cold_inbound_addr: str = ""

    @property
    def target(self) -> str:
        """Where a source sends this node's migrations (nova's target_connect_addr rule)."""
        return self.inbound_addr or self.host

    @property
    def target_origin(self) -> str:
        return ("[libvirt] live_migration_inbound_addr" if self.inbound_addr
                else "[DEFAULT] host (live_migration_inbound_addr unset)")


Lookup = Callable[[str, str], "str | None"]


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in TRUTHY


def config_from(lookup: Lookup, hostname: str, my_ip: str) -> MigrationConfig:
    """nova-compute's options from its effective config; ``hostname`` and ``my_ip``
    are nova's defaults for ``host`` and ``my_ip`` on this host (the probe gathers
    them). Our explain layer knows only the options the files set, so a
    ``$my_ip`` it could not interpolate (``my_ip`` unset) is nova's default."""
    ip = lookup("DEFAULT", "my_ip") or my_ip

    def value(section: str, option: str) -> str | None:
        v = lookup(section, option)
        return v.replace("$my_ip", ip).replace("${my_ip}", ip).strip() if v else None

    host = value("DEFAULT", "host") or hostname
    cold = (value("libvirt", "migration_inbound_addr") or ip).replace("%s", host)
    return MigrationConfig(
        virt_type=value("libvirt", "virt_type") or "kvm",
        scheme=value("libvirt", "live_migration_scheme"),
        uri_template=value("libvirt", "live_migration_uri"),
        inbound_addr=value("libvirt", "live_migration_inbound_addr"),
        host=host,
        native_tls=_flag(lookup("libvirt", "live_migration_with_native_tls")),
        tunnelled=_flag(lookup("libvirt", "live_migration_tunnelled")),
        cold_inbound_addr=cold,
    )


def connect_uri(cfg: MigrationConfig) -> str | None:
    """The libvirt URI a source opens to this node, by nova's rule; None: no live migration."""
    dest = cfg.target
    if ":" in dest and not dest.startswith("["):
        dest = f"[{dest}]"  # oslo_netutils.escape_ipv6
    if cfg.uri_template:
        return cfg.uri_template.replace("%s", dest)
    template = _URI_BY_VIRT_TYPE.get(cfg.virt_type.strip().lower())
    if template is None:
        return None
    return template.format(scheme=cfg.scheme or "tcp", dest=dest)


def uri_endpoint(uri: str) -> tuple[str, str, int | None]:
    """(transport, host, port) of a libvirt URI: ``qemu+tcp://h/system`` -> (tcp, h, 16509)."""
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2] or "tcp"
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS.get(transport)
    return transport, host, port


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class MigrationFacts:
    """What the probe saw. ``None`` means "not looked at" (an earlier step failed)."""

    resolved: tuple[str, ...] | None = None      # the target's addresses
    resolve_error: str = ""
    local: tuple[str, ...] | None = None         # those of them that are this host's
    listening: bool | None = None                # a TCP listener on (address or any):port
    answer_error: str | None = None              # libvirt's error opening the URI
    answer: str = ""                             # what libvirtd said when it answered
    port_range: tuple[int, int] = DEFAULT_PORT_RANGE
    ports_taken: int | None = None               # listeners already on the range
    port_range_error: str = ""                   # qemu.conf unreadable/invalid
    tls_missing: tuple[str, ...] = ()            # qemu TLS files missing (native TLS)
    tls_dir: str = ""


def live_migration_verdict(cfg: MigrationConfig, facts: MigrationFacts) -> tuple[Status, str]:
    """The row's status and detail: the first reason that stops a migration, in the
    order a source meets them (config, address, libvirtd, qemu's stream)."""
    uri = connect_uri(cfg)
    if uri is None:
        return "fail", (f"[libvirt] virt_type = {cfg.virt_type}: nova live-migrates only kvm, "
                        "qemu and parallels guests")
    if cfg.tunnelled and cfg.native_tls:
        return "fail", ("[libvirt] live_migration_tunnelled and live_migration_with_native_tls "
                        "are both set: nova-compute refuses to start (pick native TLS)")
    if not cfg.target:
        return "fail", "no migration target: live_migration_inbound_addr and host are unset"
    transport, _host, port = uri_endpoint(uri)
    if port is None:
        return "fail", f"{uri}: transport {transport!r} has no known port to listen on"
    where = f"{cfg.target} ({cfg.target_origin})"
    if facts.resolved is None or not facts.resolved:
        why = facts.resolve_error or "no address"
        return "fail", f"inbound address {where} does not resolve here: {why}"
    shown = ", ".join(facts.resolved)
    if not facts.local:
        return "fail", (f"inbound address {where} is {shown}, not an address of this host: "
                        "sources would migrate to another machine (set "
                        "[libvirt] live_migration_inbound_addr to this node's migration address)")
    if facts.listening is False:
        hint = {"tcp": "systemctl enable --now libvirtd-tcp.socket (and auth_tcp in "
                       "libvirtd.conf)",
                "tls": "systemctl enable --now libvirtd-tls.socket (and the PKI of "
                       "/etc/pki/libvirt)"}.get(transport, "start its listener")
        return "fail", (f"libvirtd does not listen on {facts.local[0]}:{port} for {uri} "
                        f"(nothing listens on that port): {hint}")
    if facts.answer_error is not None:
        return "fail", f"{uri} does not answer as a libvirtd: {facts.answer_error}"
    if cfg.native_tls and facts.tls_missing:
        return "fail", (f"live_migration_with_native_tls = true but qemu's TLS files are "
                        f"missing in {facts.tls_dir}: {', '.join(facts.tls_missing)}")
    lo, hi = facts.port_range
    stream = "tunnelled through libvirtd"
    if not cfg.tunnelled:
        if facts.port_range_error:
            return "fail", f"migration port range: {facts.port_range_error}"
        size = hi - lo + 1
        taken = facts.ports_taken or 0
        if taken >= size:
            return "fail", (f"all {size} migration ports {lo}-{hi} (qemu.conf "
                            "migration_port_min/max) already have a listener: qemu cannot "
                            "take an incoming migration")
        stream = f"qemu receives on ports {lo}-{hi} ({size - taken} free)"
    answered = f" ({facts.answer})" if facts.answer else ""
    detail = f"{uri} answers{answered}; {stream}"
    warnings = []
    if all(is_loopback(a) for a in facts.local):
        warnings.append(f"{cfg.target} is a loopback address: only this host can reach it")
    if cfg.uri_template:
        warnings.append("[libvirt] live_migration_uri is deprecated: use live_migration_scheme "
                        "and live_migration_inbound_addr")
    if warnings:
        return "warn", detail + "; " + "; ".join(warnings)
    return "ok", detail + "; peers must use the same live_migration_scheme"


def parse_listeners(text: str) -> list[tuple[str, int]]:
    """Listening sockets of a /proc/net/tcp or tcp6 table: [(address, port)]."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":  # TCP_LISTEN
            continue
        addr_hex, _, port_hex = fields[1].partition(":")
        raw = bytes.fromhex(addr_hex)
        # The kernel prints each 32-bit word of the address in host byte order.
        if sys.byteorder == "little":
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
        ip = ipaddress.ip_address(raw)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped  # an IPv6 socket bound to ::ffff:a.b.c.d takes a.b.c.d
        out.append((str(ip), int(port_hex, 16)))
    return out


def _any(address: str) -> set[str]:
    """The wildcard listeners that also accept on ``address``."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return {"0.0.0.0", "::"}
    return {"::"}


def listens_on(listeners: list[tuple[str, int]], address: str, port: int) -> bool:
    """Is there a listener that accepts connections to ``address:port``?"""
    ok = {address} | _any(address)
    return any(p == port and a in ok for a, p in listeners)


def taken_in_range(listeners: list[tuple[str, int]], lo: int, hi: int) -> int:
    """How many ports of ``lo..hi`` already have a listener (any address)."""
    return len({p for _a, p in listeners if lo <= p <= hi})


def parse_qemu_conf(text: str) -> dict[str, str]:
    """``key = value`` lines of libvirt's qemu.conf (comments and quotes dropped)."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        key, eq, value = line.partition("=")
        if eq and key.strip():
            out[key.strip()] = value.strip().strip('"')
    return out


def port_range(conf: dict[str, str]) -> tuple[tuple[int, int], str]:
    """qemu.conf's migration port range, or the default and why it is wrong."""
    try:
        lo = int(conf.get("migration_port_min", DEFAULT_PORT_RANGE[0]))
        hi = int(conf.get("migration_port_max", DEFAULT_PORT_RANGE[1]))
    except ValueError as exc:
        return DEFAULT_PORT_RANGE, f"qemu.conf: {exc}"
    if not 0 < lo <= hi <= 65535:
        return (lo, hi), f"qemu.conf migration_port_min/max {lo}-{hi} is not a port range"
    return (lo, hi), ""


def qemu_tls_dir(conf: dict[str, str]) -> str:
    """Where qemu looks for its migration certificates (qemu.conf's rule)."""
    return (conf.get("migrate_tls_x509_cert_dir") or conf.get("default_tls_x509_cert_dir")
            or "/etc/pki/qemu")


NOLOGIN_SHELLS = ("nologin", "false")


@dataclasses.dataclass(frozen=True)
class ColdMigrationFacts:
    """This node as the destination of a cold migration or resize: the source's
    nova-compute runs ``ssh``/``scp`` (or ``rsync`` over ssh) as its own user to
    ``[libvirt] migration_inbound_addr`` (default ``$my_ip``), which logs in as
    this node's nova-compute user (doc/upstream-behaviour.md section 17)."""

    addr: str
    local: bool
    sshd: bool | None          # a listener on (addr or any):22; None: not looked
    user: str
    login_shell: str = ""
    home: str = ""
    authorized_keys: bool = False
    resolve_error: str = ""    # the address did not resolve here


def cold_migration_verdict(f: ColdMigrationFacts) -> tuple[Status, str]:
    """``warn`` with the first missing piece (cold migration is optional), else ``ok``."""
    if f.resolve_error:
        return "warn", (f"[libvirt] migration_inbound_addr {f.addr} does not resolve here: "
                        f"{f.resolve_error}")
    if not f.local:
        return "warn", (f"[libvirt] migration_inbound_addr {f.addr} is not an address of this "
                        "host: sources would copy disks to another machine")
    if f.sshd is False:
        return "warn", f"no sshd listens on {f.addr}:22: sources cannot copy disks here"
    if os_basename(f.login_shell) in NOLOGIN_SHELLS or not f.login_shell:
        return "warn", (f"{f.user}'s login shell is {f.login_shell or 'unset'}: a source's ssh as "
                        f"{f.user} cannot run commands here (usermod -s /bin/sh {f.user})")
    if not f.authorized_keys:
        return "warn", (f"{f.home}/.ssh/authorized_keys missing or empty: no peer's "
                        f"{f.user} key may log in")
    return "ok", f"ssh as {f.user} to {f.addr}:22 (shell {f.login_shell}, authorized_keys present)"


def os_basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]
