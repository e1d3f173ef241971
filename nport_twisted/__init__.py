"""
nport-twisted: a MOXA NPort compatible serial device server built on Twisted.

The package turns a Linux box with serial ports into a pin-compatible NPort:
Real COM (ASPP), TCP Server and the other operating modes, UDP 4800
discovery, all driven by one settings model and one channel core per port.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
