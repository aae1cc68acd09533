"""Parse one INI file with oslo.config's own parser, keeping line numbers.

We parse with ``oslo_config.cfg.ConfigParser`` (not a home-made reader) so
that what we validate and explain is exactly what the daemons will see. The
only addition is remembering the line on which each key starts, which oslo
knows while parsing but does not keep; ``config explain`` and error messages
need it to say ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from oslo_config import cfg, iniparser

from hvsupervisor.config.errors import ConfigError


def norm_group(section: str) -> str:
    """oslo.config folds every section name but DEFAULT to lower case."""
    return "DEFAULT" if section.upper() == "DEFAULT" else section.lower()


@dataclass
class ParsedFile:
    """The sections of one file: {section: {key: [(value, line), ...]}}."""

    path: Path
    sections: dict[str, dict[str, list[tuple[str, int]]]] = field(default_factory=dict)
    # The line of each section's first header in this file.
    section_lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, section: str, key: str) -> int | None:
        """Line of the last assignment of ``key`` in ``section`` (the one oslo uses)."""
        values = self.sections.get(section, {}).get(key)
        return values[-1][1] if values else None


class _LineParser(cfg.ConfigParser):
    """oslo's ConfigParser, recording the first line of every assignment."""

    def __init__(self, filename: str, parsed: ParsedFile):
        super().__init__(filename, {})
        self._parsed = parsed
        self._key_line = 0

    def _split_key_value(self, line: str) -> tuple[str, list[str]]:
        # oslo flushes an assignment only when the next line starts, so
        # self.lineno in assignment() may be past the key: remember it here.
        self._key_line = self.lineno
        return super()._split_key_value(line)

    def assignment(self, key: str, value: list[str]) -> None:
        super().assignment(key, value)
        assert self.section is not None
        section = self._parsed.sections.setdefault(self.section, {})
        section.setdefault(key, []).append(("\n".join(value), self._key_line))

    def new_section(self, section: str) -> None:
        super().new_section(section)
        self._parsed.sections.setdefault(section, {})
        self._parsed.section_lines.setdefault(section, self.lineno)


def parse_file(path: Path, data: bytes | None = None) -> ParsedFile:
    """Parse ``path`` (or its already-read ``data``); ConfigError with file:line on failure."""
    parsed = ParsedFile(path)
    parser = _LineParser(str(path), parsed)
    try:
        if data is None:
            parser.parse()
        else:
            # Same parser, fed the bytes we already hashed for the digest.
            iniparser.BaseParser.parse(parser, data.decode("utf-8").splitlines())
    except iniparser.ParseError as exc:
        # Never echo the line: "password S3cretPass" (a missing '=') would put
        # the secret into stderr, the log, STATUS= and `status`.
        where = f" in section [{parser.section}]" if parser.section else ""
        raise ConfigError(f"{exc.msg.rstrip('.')}{where} (line not shown: it may hold a "
                          "secret)", path, exc.lineno) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path) from None
    return parsed
