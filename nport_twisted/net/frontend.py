"""
Former home of the listener and session helpers, now split into
L{nport_twisted.net.listener} (listeners, net table, endpoints) and
L{nport_twisted.net.session} (the admitted-session base, PortContext).

Kept only so branches in flight keep importing; new code imports from those
two modules.  To be removed once nothing imports it.
"""

from nport_twisted.net.listener import (
    ConnectionInfo,
    ListenError,
    ListenerInfo,
    ListenerService,
    NetTable,
    privileged_port_hint,
    split_endpoint,
)
from nport_twisted.net.session import PortContext, peer_host, set_keepalive, set_nodelay

__all__ = ["ConnectionInfo", "ListenError", "ListenerInfo", "ListenerService", "NetTable",
           "PortContext", "peer_host", "privileged_port_hint", "set_keepalive", "set_nodelay",
           "split_endpoint"]
