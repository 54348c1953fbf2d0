"""Bar intervals as seconds, parsed from and formatted to the short strings users type (``5m``).

One integer of seconds is the internal representation everywhere (grids, gaps, metadata), so the
string form exists only at the edges: CLI options and the human-readable metadata field.
"""

from __future__ import annotations

import re

from himari.errors import DataError

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)


def parse_interval(text: str | int) -> int:
    """Turn ``'5m'``, ``'1h'``, ``'300s'``, ``'1d'`` or an integer of seconds into seconds."""
    if isinstance(text, int):
        seconds = text
    else:
        m = _PATTERN.match(text)
        if m is not None and m.group(2) == "M":  # Binance's (and pandas') month, not a minute
            raise DataError(f"interval: {text!r} reads as months in Binance's names; bars of irregular length are "
                            f"not supported (for minutes write {m.group(1)}m)")
        if m is None:
            if text.strip().isdigit():
                seconds = int(text)
            else:
                raise DataError(f"interval: expected e.g. 5m, 1h, 1d or seconds, got {text!r}")
        else:
            seconds = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if seconds <= 0:
        raise DataError(f"interval: must be positive, got {text!r}")
    return seconds


def format_interval(seconds: int) -> str:
    """Format seconds as the largest exact unit: 300 -> ``'5m'``, 3600 -> ``'1h'``."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def bars_per_year(seconds: int) -> float:
    """Bars in a 365-day year of round-the-clock trading (105,120 for 5-minute bars)."""
    return 365 * 86400 / seconds
