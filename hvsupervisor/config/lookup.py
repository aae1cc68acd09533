"""``[DEFAULT] run_dir`` without oslo.config's option machinery, for the CLI's fast path.

``hvsupervisor status`` (and restart, start, stop, reload) only needs the run
dir to find the control socket. Loading the settings for it imports
oslo.config's option registry and oslo.log (~150-250 ms), more than the whole
answer may take (benchmarks/cli_latency.py). So the layered catalog files
are resolved by the same rules (``layers.resolve``) and read with
oslo.config's own INI parser (``oslo_config.iniparser``, the grammar the full
load uses), and the last ``run_dir`` in ``[DEFAULT]`` wins, as in oslo.config.

Whenever the answer might differ from the full load (a value with ``$``
substitution or on several lines, a file that does not parse), this returns
None and the caller loads the settings properly, which also reports the
error with its file and line.
"""

from __future__ import annotations

from pathlib import Path

from hvsupervisor.config import layers, paths
from hvsupervisor.config.errors import ConfigError


def _last_value(path: Path, section: str, key: str) -> list[str] | None:
    """The value lines of the last ``key`` in ``section`` of one file (None: not set).

    Raises ValueError where the file cannot be read or parsed.
    """
    from oslo_config import iniparser

    found: list[list[str]] = []

    class _Reader(iniparser.BaseParser):
        current = ""

        def new_section(self, name: str) -> None:
            self.current = name

        def assignment(self, name: str, value: list[str]) -> None:
            if self.current == section and name == key:
                found.append(value)

        def parse_exc(self, msg: str, lineno: int, line: str | None = None):
            return ValueError(f"{path}:{lineno}: {msg}")

    try:
        with open(path) as fh:
            _Reader().parse(fh)
    except (OSError, UnicodeDecodeError, iniparser.ParseError) as exc:
        raise ValueError(str(exc)) from None
    return found[-1] if found else None


def run_dir(defaults_dir: Path | None, override_dir: Path | None) -> Path | None:
    """The run dir the full settings load would give, or None when unsure."""
    defaults_dir = Path(defaults_dir or paths.defaults_dir()).absolute()
    override_dir = Path(override_dir or paths.DEFAULT_OVERRIDE_DIR).absolute()
    try:
        res = layers.resolve(defaults_dir, override_dir, [paths.CATALOG_NAME],
                             [paths.CATALOG_CONF_D])
        values = [v for lf in res.files
                  if (v := _last_value(lf.path, "DEFAULT", "run_dir")) is not None]
    except (ConfigError, ValueError):
        return None
    if not values:
        return Path(paths.DEFAULT_RUN_DIR)
    value = values[-1]
    if len(value) != 1 or "$" in value[0] or not value[0].strip():
        return None
    return Path(value[0].strip()).absolute()
