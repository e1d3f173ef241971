"""
nport-realtty: MOXA's Real COM on Linux without MOXA's kernel module.

For every configured remote port (an NPort's serial port, MOXA's or
nport-twisted's) a pseudo-terminal is created and a stable symlink points
at its slave (C{/dev/ttyNP0}, or MOXA's C{/dev/ttyr00} names from an
existing C{npreal2d.cf}).  What applications do to that tty becomes ASPP on
the command connection (966+n-1), their data goes over the data connection
(950+n-1), as MOXA's driver does it (realcom.md §3).

  - L{config}: the port list (command line, our INI file, npreal2d.cf);
  - L{termios_map}: termios and packet-mode events -> ASPP (pure);
  - L{pty}: ptys, links, the master in the reactor;
  - L{relay}: one port's lifecycle (open, settings, close, reconnect);
  - L{liveness}: UDP 4800 polling as C{npreal2d -t 1};
  - L{control}: the control/status socket and the status file;
  - L{service}, L{options}, L{cli}: the service and the command lines
    (C{nport-realtty}, C{twistd nport realtty}, C{twistd nport --realtty FILE}).

docs/realtty.md is the user documentation.
"""

__all__ = ["cli", "config", "control", "liveness", "options", "pty", "relay", "service",
           "termios_map"]
