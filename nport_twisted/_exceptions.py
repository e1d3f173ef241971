"""
Domain exceptions of nport-twisted.

Pure code raises these; the protocol and service layers turn them into a
protocol reply, a closed connection or a usage error.
"""

from __future__ import annotations


class NPortError(Exception):
    """Base class of every nport-twisted error."""


class ConfigError(NPortError):
    """A settings file or value is invalid; the message names the key and value."""


class SerialSettingRefused(NPortError):
    """The serial device refused a setting (ptys refuse parity and data bits)."""


class DeviceUnavailable(NPortError):
    """The serial device is not open (missing, unplugged, or being reopened)."""
