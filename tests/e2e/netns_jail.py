"""Run a command with a private, empty /run/netns (test helper, run as root).

neutron-netns-cleanup deletes matching namespaces host-wide. The test starts
this under ``unshare --mount --propagation private``: it mounts a tmpfs over
/run/netns (visible only in this mount namespace), creates the qdhcp/qrouter
namespaces named in --make, runs the command, then prints the namespaces
left, one per line, after a ``--- left`` marker. Exit code: the command's.

Usage: python netns_jail.py [--make NAME]... -- ARGV...
"""

from __future__ import annotations

import os
import subprocess
import sys


def main(argv: list[str]) -> int:
    split = argv.index("--")
    opts, command = argv[:split], argv[split + 1:]
    make = [opts[i + 1] for i, a in enumerate(opts) if a == "--make"]
    os.makedirs("/run/netns", exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run/netns"],
                   check=True)
    for name in make:
        subprocess.run(["ip", "netns", "add", name], check=True)
    rc = subprocess.run(command, check=False).returncode
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=False).stdout
    print("--- left", flush=True)
    print(left, end="", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
