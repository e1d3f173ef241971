"""
Domain exceptions of nport-twisted.

Pure code raises these; the protocol and service layers turn them into a
protocol reply, a closed connection or a usage error.
"""

from __future__ import annotations


class NPortError(Exception):
    """Base class of every nport-twisted error."""


class ConfigError(NPortError):
    """
    A settings file or value is invalid; the message names the key and
    value.  C{problems} lists every problem found (the message joins them).
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)

    @classmethod
    def of(cls, problems: list[str]) -> ConfigError:
        """One error for every problem of C{problems} (at least one)."""
        return cls("; ".join(problems), tuple(problems))


class SerialSettingRefused(NPortError):
    """The serial device refused a setting (ptys refuse parity and data bits)."""


class DeviceUnavailable(NPortError):
    """The serial device is not open (missing, unplugged, or being reopened)."""
