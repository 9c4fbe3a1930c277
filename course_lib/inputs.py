"""The errors that the input checkers raise, readable both from Python and from the command line.

Each input has one checker, next to the code that uses it (``guidance.check_guidance_scale``,
``guidance.check_p_uncond``, ``flow.check_gamma``, :func:`check_num_steps`, ...). A sampler calls its
checkers once, on entry; the command line calls the same checkers, with its own tighter bounds, and
shows their errors in its own form (``--gamma -1.0: must lie in [0, 10]``) through
:meth:`InputError.for_option` and :meth:`ChoiceError.for_options`.
"""

from __future__ import annotations

import math


class InputError(ValueError):
    """One argument outside what it may be. ``str()`` reads ``name must ..., got value``."""

    def __init__(self, name: str, value, requirement: str, reason: str | None = None):
        super().__init__(f"{name} {requirement}, got {value!r}")
        self.name, self.value, self.requirement = name, value, requirement
        self.reason = reason or requirement  # what the command line says after the value

    def for_option(self, option: str) -> str:
        return f"{option} {self.value}: {self.reason}"


class NotANumber(InputError, TypeError):
    """An argument that is not a number at all (``"2"``, ``None``, ``True``); also a ``TypeError``."""


class ChoiceError(ValueError):
    """Arguments that do not go together. ``template`` names them as ``{sampler}``, ``{steps}``, ...

    ``str()`` fills in the bare names (``gamma sets the noise of sampler sde only``);
    :meth:`for_options` the command line's (``--gamma sets the noise of --sampler sde only``).
    """

    def __init__(self, template: str):
        super().__init__(template.format_map(_Names("")))
        self.template = template

    def for_options(self, options: dict[str, str] | None = None) -> str:
        """The message with ``--name`` for each name, or the option ``options`` gives it."""
        return self.template.format_map(_Names("--", options or {}))


class _Names(dict):
    def __init__(self, prefix: str, renamed: dict[str, str] | None = None):
        super().__init__(renamed or {})
        self.prefix = prefix

    def __missing__(self, name: str) -> str:
        return self.prefix + name


def check_number(name: str, value, low: float = 0.0, high: float = math.inf, *, high_included: bool = True,
                 hint: str = "") -> float:
    """``value`` as a float if it is a finite number in [low, high] (or [low, high)); else an InputError.

    Without an upper bound the requirement reads "a finite number >= low"; ``hint`` follows the range.
    """
    bounded = math.isfinite(high)
    closing = "]" if high_included else ")"
    requirement = (f"must lie in [{low:g}, {high:g}{closing}" if bounded else f"must be a finite number >= {low:g}")
    requirement += f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NotANumber(name, value, requirement)
    too_high = value > high or (value == high and not high_included)
    if not math.isfinite(value) or value < low or too_high:
        raise InputError(name, value, requirement)
    return float(value)


def check_num_steps(num_steps, maximum: int | None = None, name: str = "num_steps",
                    over_maximum: str | None = None) -> int:
    """A sampler's step count: a positive integer, at most ``maximum`` when given (DDIM: the scheduler's T).

    ``over_maximum`` says why there is a maximum, for the command line (``--steps 1001: DDIM takes ...``).
    """
    if maximum is None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise InputError(name, num_steps, "must be a positive integer")
        return num_steps
    if isinstance(num_steps, bool) or not isinstance(num_steps, int):  # 2.5 would fail deep inside linspace
        raise InputError(name, num_steps, f"must be an integer in [1, {maximum}]")
    if not 1 <= num_steps <= maximum:
        raise InputError(name, num_steps, f"must lie in [1, {maximum}]",
                         over_maximum if num_steps > maximum else None)
    return num_steps
