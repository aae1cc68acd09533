"""The one error type for operator mistakes in configuration.

Every config failure must reach the operator as one line naming the file,
the line where known, and what is wrong; the CLI maps it to exit code 78
(EX_CONFIG, sysexits.h), which systemd shows in ``systemctl status``.
"""

from __future__ import annotations

EX_CONFIG = 78


class ConfigError(Exception):
    """An operator-facing configuration error with its location."""

    def __init__(self, reason: str, path: str | None = None, line: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.path = str(path) if path is not None else None
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return f"{where}{self.reason}"


class ConfigWarning(ConfigError):
    """Something in the config that is ignored, with its location (systemd's
    "Unknown key name 'x' in section 'y', ignoring."): reported by ``validate``,
    logged at start and a failing ``check`` row, but never a reason to refuse."""
