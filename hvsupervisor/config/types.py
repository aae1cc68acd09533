"""oslo.config types for the supervisor's own options: the one place bounds live.

``config validate`` and ``run`` read every option through these types (config/opts.py
declares them), so a value that validates is a value that runs. Why our own
subclasses and not plain ``types.Float``: oslo's Float accepts ``nan``,
``inf`` and ``1e308``, which pass a ``min=0`` check and then mean "no grace at
all" (``nan``) or "never escalate to SIGKILL" (``inf``). A number of seconds
here must be finite and below a stated maximum.

Messages never repeat the value: an environment value may be a password, and
one rule for every option is easier to trust than a list of exceptions.
"""

from __future__ import annotations

import math
import re

from oslo_config import types

from hvsupervisor.config.ready import ReadyRule

# One day: longer than any stop, start or backoff an operator means, short
# enough that asyncio timers and arithmetic stay exact.
DAY = 86400.0

# POSIX "portable" environment names (IEEE Std 1003.1, 8.1): letters, digits
# and underscore, not starting with a digit. Rules out '=', NUL and spaces,
# which execve() cannot carry as a name.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Seconds(types.Float):
    """A finite number of seconds in ``[min, max]``."""

    def __init__(self, min: float = 0.0, max: float = DAY, type_name: str = "seconds"):
        super().__init__(min=min, max=max, type_name=type_name)

    def __call__(self, value):
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise ValueError("not a number") from None
        else:
            number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"must be a finite number between {self.min:g} and {self.max:g}")
        if not self.min <= number <= self.max:
            raise ValueError(f"must be between {self.min:g} and {self.max:g}")
        return number


class Fraction(Seconds):
    """A finite fraction in ``[0, 1]`` (restart jitter)."""

    def __init__(self) -> None:
        super().__init__(min=0.0, max=1.0, type_name="fraction")


class Count(types.Integer):
    """An integer in ``[min, max]``, with a message that does not echo the value."""

    def __call__(self, value):
        try:
            return super().__call__(value)
        except ValueError:
            raise ValueError(
                f"must be an integer between {self.min} and {self.max}") from None


class Environment(types.Dict):
    """``KEY:VALUE,...`` with portable names; an empty VALUE is kept (it removes KEY
    when environments are merged across layers, see config/settings.py)."""

    def __init__(self) -> None:
        super().__init__(value_type=types.String(), type_name="environment")

    def __call__(self, value):
        try:
            parsed = super().__call__(value)
        except ValueError:
            raise ValueError("expected KEY:VALUE pairs separated by commas") from None
        for key, val in parsed.items():
            if not ENV_NAME.match(key):
                raise ValueError(
                    "an environment name must be letters, digits and '_', not starting "
                    "with a digit (no '=', spaces or NUL)")
            if "\0" in val:
                raise ValueError(f"the value of {key} contains a NUL byte")
        return parsed


class ReadyText(types.String):
    """A ``ready`` rule, checked with the same parser the plan uses (ReadyRule)."""

    def __init__(self) -> None:
        super().__init__(type_name="ready rule")

    def __call__(self, value):
        text = super().__call__(value)
        ReadyRule.parse(text)
        return text


class Pattern(types.String):
    """A regular expression (Python's ``re``), compiled once here so that a bad
    one is an error naming its file and line, not a failure at the next stop."""

    def __init__(self) -> None:
        super().__init__(type_name="regular expression")

    def __call__(self, value):
        text = super().__call__(value)
        try:
            re.compile(text)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return text
