"""The demo's figures (issue 12): first run, second run to serving, a boot, Ctrl-C.

Runs the demo as a user would, in the foreground, and reads what it prints:

* ``first``: an empty demo dir (databases built, the KVM probe made); with
  ``--run-demo`` the command is ``./run_demo`` itself, so an empty dir also
  means the venv install (Debian packages assumed present).
* ``second``: the same dir again (databases kept, virt type remembered): the
  time to "serving" is the demo's own ``joined the cloud X s after start``
  line (every agent ready in the supervisor, nova-compute up in nova's
  services, four neutron agents alive in neutron's API).
* ``boot``: the same dir with ``--boot``: POST /servers -> ACTIVE, and ACTIVE ->
  the guest's console line with the uuid it read through the node's metadata
  path.

After each run's last figure the demo gets SIGINT (what Ctrl-C delivers) and
the time until it has exited is ``stop_s``; ``clean`` says it ended with
``stopped (rc=0)``.

Needs root and an interpreter with nova, neutron, placement, glance and
libvirt-python (the e2e venv, or the demo's own ``.demo/venv``):

    .tox/e2e/bin/python benchmarks/demo.py
    python3 benchmarks/demo.py --run-demo --dir /tmp/hvd-bench   # install included

One JSON line per run, then a ``goals`` line. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECOND_TO_SERVING_GOAL_S = 30.0
BOOT_TO_METADATA_GOAL_S = 60.0  # with KVM (the target)

PATTERNS = {
    "installed_s": r"run_demo: installed in (\d+) s",
    "cloud_up_s": r"cloud (?:and libvirtd )?up ([0-9.]+) s after start",
    "joined_s": r"joined the cloud ([0-9.]+) s after start",
    "boot_to_active_s": r"ACTIVE on \S+ in ([0-9.]+) s",
    "active_to_metadata_s": r"through this node's metadata path ([0-9.]+) s after ACTIVE",
}


def _found(text: str) -> dict[str, float]:
    out = {}
    for key, pattern in PATTERNS.items():
        m = re.search(pattern, text)
        if m:
            out[key] = float(m.group(1))
    return out


def run_once(name: str, argv: list[str], env: dict[str, str], out: Path, want: str,
             timeout: float) -> dict:
    """Start the demo, wait for figure ``want`` (or the demo's end), SIGINT, time the stop."""
    t0 = time.monotonic()
    with open(out, "wb") as fh:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    result: dict = {"figure": f"demo-{name}", "argv": argv[-3:]}
    deadline = t0 + timeout
    text = ""
    while time.monotonic() < deadline and proc.poll() is None:
        text = out.read_text(errors="replace")
        if want in _found(text) or "boot failed" in text or "not joined after" in text:
            break
        time.sleep(0.5)
    result["wall_to_figure_s"] = round(time.monotonic() - t0, 1)
    t_stop = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        result["killed"] = True
    result["stop_s"] = round(time.monotonic() - t_stop, 1)
    text = out.read_text(errors="replace")
    result.update(_found(text))
    m = re.search(r"stopping the agents \(up to (\d+) s\)", text)
    if m:
        result["supervisor_stop_budget_s"] = int(m.group(1))
    m = re.search(r"attempt (\d+)\)", text)
    if m:
        result["boot_post_attempts"] = int(m.group(1))
    result["databases"] = ("built" if "databases built" in text else
                           "kept" if "databases kept" in text else None)
    result["rc"] = proc.returncode
    result["clean"] = "stopped (rc=0)" in text
    if want not in result:
        result["tail"] = text[-1500:]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hvd-bench"),
                    help="the demo dir (emptied first: the first run is a first run)")
    ap.add_argument("--run-demo", action="store_true",
                    help="run ./run_demo (install included) instead of this python's "
                    "`-m hvsupervisor demo`")
    ap.add_argument("--runs", default="first,second,boot",
                    help="which runs, in order (first,second,boot)")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    demo = args.dir.resolve()
    shutil.rmtree(demo, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HVSUP_")}
    env.update(HVSUP_DEMO_DIR=str(demo), PYTHONPATH=str(REPO))
    if args.run_demo:
        base = [str(REPO / "run_demo")]
    else:
        base = [sys.executable, "-m", "hvsupervisor", "demo", "--dir", str(demo)]
    results = {}
    for name in args.runs.split(","):
        argv = base + (["--boot"] if name == "boot" else [])
        want = "active_to_metadata_s" if name == "boot" else "joined_s"
        demo.parent.mkdir(parents=True, exist_ok=True)
        out = demo.parent / f"{demo.name}-{name}.out"
        results[name] = run_once(name, argv, env, out, want, args.timeout)
        print(json.dumps(results[name]), flush=True)
    second = results.get("second", {}).get("joined_s")
    boot = results.get("boot", {})
    to_meta = (boot["boot_to_active_s"] + boot["active_to_metadata_s"]
               if "active_to_metadata_s" in boot else None)
    print(json.dumps({"figure": "goals", "goal": {
        "second_run_to_serving_s": second, "second_run_goal_s": SECOND_TO_SERVING_GOAL_S,
        "second_run_met": second is not None and second <= SECOND_TO_SERVING_GOAL_S,
        "boot_to_metadata_s": to_meta, "boot_goal_s": BOOT_TO_METADATA_GOAL_S,
        "boot_met": to_meta is not None and to_meta <= BOOT_TO_METADATA_GOAL_S,
    }}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
