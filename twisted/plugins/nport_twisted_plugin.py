"""
twistd / twist plugin for nport-twisted: ``twistd -n nport --ports /dev/ttyUSB0``.

Holds only the ServiceMaker so that plugin scans stay cheap; the options and
the service live in :mod:`nport_twisted.tap`.
"""

from twisted.application.service import ServiceMaker

nport = ServiceMaker(
    "nport-twisted",
    "nport_twisted.tap",
    "A MOXA NPort compatible serial device server",
    "nport",
)
