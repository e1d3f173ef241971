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


def device_services(server: IDeviceContext, host: HostNetwork | None = None) -> list[service.IService]:
    """
    The device-level services of C{server} (an L{NPortService}): the DSCI
    responder on UDP 4800, the TCP 4900 capture listener and the Auto IP
    Report sender, all shifted by the server's port offset and bound to its
    interface.  Add each as a child of the server.
    """
    host = host if host is not None else HostNetwork()
    model = server.config.identity.model_info(max(len(server.config.ports), 1))
    if not model.discoverable:
        _log.warn("{model} has no known discovery IDs: no DSCI (UDP 4800) answers and no Auto "
                  "IP Report; hosts reach this box by its address", model=model.name)
        return [capture_service(server)]
    return [DsciService(server, host), capture_service(server), AutoReportService(server, host)]
