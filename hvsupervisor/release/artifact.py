"""Build a release artifact where an index is reachable; install it where none is.

The artifact is one uncompressed tar (wheels are compressed already)::

    manifest.json        core/release_model.Release: id, track, build time, every
                         distribution with its version and sha256
    requirements.lock    name==version --hash=sha256:... for every wheel
    wheels/*.whl         every distribution, libvirt-python built here as a wheel

Why a wheelhouse and not a prebuilt venv (OpenStack-Ansible's venv tarballs,
dh-virtualenv's .deb): a venv is not relocatable (its scripts name their
interpreter by absolute path), so a prebuilt one must be built at the node's
exact prefix and for the node's exact python. From wheels, the node builds its
venv with its own python3 (``python3 -m venv``, then ``pip install --no-index
--require-hashes``): no compiler, no index, no path rewriting, and every file
is checked against the lock. The cost is the install time (measured in
benchmarks/release.py), paid once per release and not during a switch.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from hvsupervisor.core.release_model import Dist, Release, normalize, release_id
from hvsupervisor.release.store import MANIFEST, ReleaseError, ReleaseStore, write_atomic

# The OpenStack releases a node can be built for, each pinned to what it resolves
# to (release/tracks/<track>.txt: the full pin set, used as pip constraints).
TRACKS: Mapping[str, tuple[str, ...]] = {
    "2026.1": ("nova==33.0.2", "neutron==28.0.2", "libvirt-python"),
    "2026.2": ("nova==34.0.0", "neutron==29.0.0", "libvirt-python"),
}
NODE_PYTHON = "/usr/bin/python3"  # Debian's own: the node's venvs are built from it


def track_constraints(track: str) -> Path | None:
    ref = resources.files("hvsupervisor.release") / "tracks" / f"{track}.txt"
    return Path(str(ref)) if ref.is_file() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wheel_name_version(filename: str) -> tuple[str, str]:
    """``oslo.config-9.7.0-py3-none-any.whl`` -> ("oslo.config", "9.7.0") (PEP 427)."""
    parts = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) < 5:
        raise ReleaseError(f"not a wheel file name: {filename}")
    return parts[0], parts[1]


def _run(argv: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> None:
    r = subprocess.run(list(argv), capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-15:]
        raise ReleaseError(f"{what} failed (exit {r.returncode}):\n  " + "\n  ".join(tail))


def clean_env() -> dict[str, str]:
    """The caller's environment without PYTHONPATH/PYTHONHOME: a release's python must
    see its own venv only (a PYTHONPATH checkout would shadow what it installs)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _offline_env() -> dict[str, str]:
    """pip with no index, no config file and no PIP_* from the caller: only the artifact."""
    env = {k: v for k, v in clean_env().items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def build(track: str, source: Path, output_dir: Path, *, python: str = NODE_PYTHON,
          requires: Sequence[str] | None = None, constraints: Path | None = None,
          now: datetime.datetime | None = None) -> tuple[Path, Release]:
    """Build ``hvsupervisor-<id>.tar`` in ``output_dir`` from the checkout ``source``.

    ``requires``/``constraints`` default to the track's (TRACKS); a site's own
    track passes its own. Runs pip where an index is reachable (the caller's pip
    configuration applies), with ``python`` (the interpreter the nodes run).
    """
    if requires is None:
        if track not in TRACKS:
            raise ReleaseError(f"unknown track {track!r} (known: {', '.join(TRACKS)}; "
                               "a site track needs --require and --constraints)")
        requires = TRACKS[track]
        constraints = constraints or track_constraints(track)
    if not (Path(source) / "setup.cfg").is_file():
        raise ReleaseError(f"{source}: not an hvsupervisor checkout (no setup.cfg)")
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hvsup-build-") as tmp:
        work = Path(tmp)
        _run([python, "-m", "venv", str(work / "venv")], f"{python} -m venv", env=clean_env())
        pip = [str(work / "venv" / "bin" / "python"), "-m", "pip"]
        wheels = work / "wheels"
        argv = [*pip, "wheel", "--quiet", "--wheel-dir", str(wheels)]
        if constraints:
            argv += ["-c", str(constraints)]
        _run([*argv, str(Path(source).resolve()), *requires], "pip wheel", env=clean_env())
        dists = []
        for whl in sorted(wheels.glob("*.whl")):
            name, version = wheel_name_version(whl.name)
            dists.append(Dist(name, version, _sha256(whl), whl.name))
        if not any(normalize(d.name) == "hvsupervisor" for d in dists):
            raise ReleaseError("pip wheel built no hvsupervisor wheel")
        lock = "".join(f"{d.name}=={d.version} --hash=sha256:{d.sha256}\n" for d in dists)
        version = next(d.version for d in dists if normalize(d.name) == "hvsupervisor")
        built = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rel = Release(id=release_id(track, version, hashlib.sha256(lock.encode()).hexdigest()),
                      track=track, version=version, built=built, dists=tuple(dists))
        out = output_dir / f"hvsupervisor-{rel.id}.tar"
        tmp_out = output_dir / f".{out.name}.tmp"
        with tarfile.open(tmp_out, "w") as tar:
            _add_bytes(tar, "manifest.json", json.dumps(rel.to_manifest(), indent=1).encode())
            _add_bytes(tar, "requirements.lock", lock.encode())
            for d in dists:
                tar.add(wheels / d.filename, arcname=f"wheels/{d.filename}")
        os.replace(tmp_out, out)
    return out, rel


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def read_manifest(artifact: Path) -> Release:
    """The artifact's manifest, or a ReleaseError naming the file and what is wrong."""
    try:
        with tarfile.open(artifact, "r:") as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            return Release.from_manifest(json.loads(member.read()))
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise ReleaseError(f"{artifact}: not a release artifact ({exc})") from None


def install(artifact: Path, store: ReleaseStore, *, python: str = NODE_PYTHON) -> Release:
    """Install ``artifact`` as ``<root>/releases/<id>/`` with no index: verify every
    wheel against the manifest, make the venv with the node's ``python``, install
    with hashes required, then write the manifest (the install's last step: a
    directory without it is a half-done install, redone here)."""
    rel = read_manifest(artifact)
    target = store.path(rel.id)
    if store.get(rel.id) is not None:
        return store.require(rel.id)
    expected = {f"wheels/{d.filename}": d.sha256 for d in rel.dists}
    store.releases.mkdir(parents=True, exist_ok=True)
    incoming = Path(tempfile.mkdtemp(prefix=f".incoming-{rel.id}-", dir=store.releases))
    try:
        with tarfile.open(artifact, "r:") as tar:
            names = set(tar.getnames())
            unknown = names - set(expected) - {"manifest.json", "requirements.lock"}
            if unknown or "requirements.lock" not in names:
                raise ReleaseError(f"{artifact}: unexpected members "
                                   f"{sorted(unknown)[:5] or ['(no requirements.lock)']}")
            # Member by member, regular files only, to names checked above: no
            # path or link in an artifact can write outside ``incoming`` (and
            # Debian 12's python 3.11.2 has no tarfile extraction filters).
            (incoming / "wheels").mkdir()
            for member in tar.getmembers():
                source = tar.extractfile(member) if member.isfile() else None
                if source is None:
                    raise ReleaseError(f"{artifact}: {member.name} is not a regular file")
                with source, open(incoming / member.name, "wb") as dest:
                    shutil.copyfileobj(source, dest)
        for name, digest in expected.items():
            if not (incoming / name).is_file() or _sha256(incoming / name) != digest:
                raise ReleaseError(f"{artifact}: {name} is missing or does not match the "
                                   "manifest's sha256")
        if target.exists():
            shutil.rmtree(target)  # a half-done install (no manifest)
        _run([python, "-m", "venv", str(target)], f"{python} -m venv {target}",
             env=clean_env())
        _run([str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
              "--find-links", str(incoming / "wheels"), "--require-hashes", "--no-deps",
              "-r", str(incoming / "requirements.lock")], "offline pip install",
             env=_offline_env())
        write_atomic(target / MANIFEST, json.dumps(rel.to_manifest(), indent=1).encode())
    except BaseException:
        if store.get(rel.id) is None and target.exists():
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    return rel
