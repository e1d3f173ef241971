# -*- test-case-name: tests.test_discovery -*-
"""
The device-level network services of an NPort, assembled: the UDP 4800 DSCI
responder (L{nport_twisted.services.dsci_responder}), the TCP 4900 capture
listener (L{nport_twisted.services.capture}) and the Auto IP Report sender
(L{nport_twisted.services.autoreport}) (docs/discovery.md, dsci.md).
"""

from __future__ import annotations

from twisted.application import service
from twisted.logger import Logger

from nport_twisted.config.identity import HostNetwork
from nport_twisted.net.context import IDeviceContext
from nport_twisted.services.autoreport import AutoReportService
from nport_twisted.services.capture import capture_service
from nport_twisted.services.dsci_responder import DsciService

__all__ = ["device_services"]

_log = Logger()


def device_services(server: IDeviceContext, host: HostNetwork | None = None,
                    discovery: bool = True, capture: bool = True) -> list[service.IService]:
    """
    The device-level services of C{server} (an L{NPortService}): the DSCI
    responder on UDP 4800 (unless C{discovery} is off: C{--no-discovery}),
    the TCP 4900 capture listener (unless C{capture} is off:
    C{--no-capture}) and the Auto IP Report sender (it only sends when the
    settings name a report host), all shifted by the server's port offset
    and bound to its interface.  Add each as a child of the server.
    """
    host = host if host is not None else HostNetwork()
    model = server.config.identity.model_info(max(len(server.config.ports), 1))
    discoverable = model.discoverable
    if not discoverable:
        _log.warn("{model} has no known discovery IDs: no DSCI (UDP 4800) answers and no Auto "
                  "IP Report; hosts reach this box by its address", model=model.name)
    services: list[service.IService] = []
    if discovery and discoverable:
        services.append(DsciService(server, host))
    if capture:
        services.append(capture_service(server))
    if discoverable:
        services.append(AutoReportService(server, host))
    return services
