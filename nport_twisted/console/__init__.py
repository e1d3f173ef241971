# -*- test-case-name: tests.test_telnet_console -*-
"""
The NPort telnet console (TCP 23 + offset; docs/telnet-console.md).

L{telnet_services} builds its listener for an L{nport_twisted.server.NPortService}
and the console state it shares with the web console
(L{nport_twisted.web.WebConsole}: pending settings, password, setup token,
login rate limiting).  Pure parts: L{nport_twisted.console.terminal} (telnet
negotiation, echo, line editing, CR NUL LF output) and
L{nport_twisted.console.menu} (banner, MOXA's menus generated from the web
console's field catalogue); the thin protocol is L{nport_twisted.console.telnet}.
"""

from __future__ import annotations

from nport_twisted.console.telnet import TELNET_PORT, telnet_services

__all__ = ["TELNET_PORT", "telnet_services"]
