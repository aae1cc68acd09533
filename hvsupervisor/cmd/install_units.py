"""``hvsupervisor install-units``: put the shipped units where systemd reads them.

A pip or venv install leaves the units under ``<prefix>/share/hvsupervisor``
and its console script outside /usr/bin, which the units name. This copies
the units, the tmpfiles.d and logrotate snippets, and, when the running
``hvsupervisor`` is not /usr/bin/hvsupervisor, writes drop-ins pointing the
units at it (the units themselves stay pristine, as systemd expects).
It then applies the sysusers.d file (the agents' users), as a package does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from hvsupervisor.config import paths

PACKAGED = "/usr/bin/hvsupervisor"
DROPIN = "50-hvsupervisor-path.conf"


def _dropins(exe: str) -> dict[str, str]:
    head = "# Written by `hvsupervisor install-units`: this install's hvsupervisor.\n[Service]\n"
    return {
        "hvsupervisor.service": head + f"ExecStart=\nExecStart={exe} run\n"
                                       f"ExecReload=\nExecReload={exe} reload\n",
        "hvsupervisor-cleanup.service": head + f"ExecStart=\nExecStart={exe} cleanup ovs\n"
                                               f"ExecStart={exe} cleanup netns\n",
    }


def _default_exe() -> str:
    """This install's hvsupervisor; for a release (doc/release.md) the ``current``
    link's, never the release's own directory: a switch moves the link, and the unit
    must follow it."""
    from hvsupervisor.release.store import running_release

    if running_release() is not None:
        link = Path(sys.prefix).parent.parent / "current" / "bin" / "hvsupervisor"
        if link.exists():
            return str(link)
    return str(paths.bindir() / "hvsupervisor")


def install(root: Path, exe: str | None = None) -> list[Path]:
    """Install under ``root`` (``/`` for the host); return the files written."""
    units = paths.units_dir()
    exe = exe or _default_exe()
    written: list[Path] = []

    def put(src: Path, dest: Path, mode: int = 0o644) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        dest.chmod(mode)
        written.append(dest)

    system = root / "etc/systemd/system"
    for unit in ("hvsupervisor.service", "hvsupervisor-cleanup.service"):
        put(units / unit, system / unit)
    put(units / "tmpfiles.d/hvsupervisor.conf", root / "etc/tmpfiles.d/hvsupervisor.conf")
    # The agents' users (nova, neutron): systemd-sysusers creates them.
    put(units / "sysusers.d/hvsupervisor.conf", root / "etc/sysusers.d/hvsupervisor.conf")
    put(units / "logrotate.d/hvsupervisor", root / "etc/logrotate.d/hvsupervisor")
    for unit, text in _dropins(exe).items():
        dest = system / f"{unit}.d" / DROPIN
        if exe == PACKAGED:
            dest.unlink(missing_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
        dest.chmod(0o644)
        written.append(dest)
    return written


def apply_sysusers(root: Path) -> str | None:
    """``systemd-sysusers`` on the installed sysusers.d file, as a package's postinst does.

    Creates nova, neutron and the openvswitch group (an existing account is
    left as it is). They are used only where the catalog sets ``user =``,
    but ``run`` refuses a user that does not exist, so they are made here
    rather than at the first ``run``. Returns a problem to print, or None.
    """
    conf = root / "etc/sysusers.d/hvsupervisor.conf"
    exe = shutil.which("systemd-sysusers")
    if exe is None:
        return ("systemd-sysusers not found: create the users in "
                f"{conf} yourself before setting user = in the catalog")
    argv = [exe, str(conf)] if root == Path("/") else [exe, f"--root={root}", str(conf)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        return f"{' '.join(argv)} failed (rc {out.returncode}): {out.stderr.strip()}"
    return None


def main(args) -> int:
    return run(args.root)


def run(root: str) -> int:
    for path in install(Path(root)):
        print(f"installed {path}")
    problem = apply_sysusers(Path(root))
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    else:
        print("applied sysusers.d/hvsupervisor.conf (users nova, neutron; group openvswitch)")
    print("next: systemctl daemon-reload && "
          "systemd-tmpfiles --create hvsupervisor.conf && "
          "systemctl enable --now hvsupervisor-cleanup hvsupervisor", file=sys.stderr)
    return 0
