# -*- test-case-name: tests.test_serialdev -*-
"""
Twisted transport plumbing the rest of the package shares, in one place.

Some of it reads private state of Twisted's C{FileDescriptor} (its write
buffer: C{dataBuffer}, C{offset}, C{_tempDataBuffer}, C{_tempDataLen}),
because Twisted keeps no public count of unsent bytes and has no "send now"
call.  Keep every such access here, so a Twisted upgrade has one module to
check.  Front-ends, the channel, the device adapter and the tools import
from here; nothing here imports the rest of the package.

  - L{write_now}: C{transport.write} without the extra reactor turn when
    nothing is queued (the relay latency of a small write); L{direct_writer}
    the same for the dedicated relay, checks only.
  - L{unsent_bytes}, L{discard_unsent}: the user-space write buffer.
  - L{unread_bytes}, L{discard_unread}: the kernel receive queue of a TCP
    socket (Real COM WAIT_OQUEUE and FLUSH).
  - L{BufferProducer}: the one push-producer adapter, registered with a
    transport to hear when its write buffer fills and drains.
  - L{TtyEof}: whether an empty read from a serial device is a hang-up
    or only a flushed wake-up (VMIN=0 ttys answer 0 bytes for "nothing").
  - L{peer_closed}: whether the peer of a socket we are not reading from
    has closed or reset it (POLLRDHUP/POLLHUP/POLLERR, nothing consumed).
  - L{tls_handshake_pending}: a TLS transport still in its handshake
    (its "buffer full" then means nothing).
  - L{import_without_tls}, L{enable_tls}: keep pyOpenSSL (about 13 MiB)
    out of a process that serves no TLS (docs/performance.md, "Memory").
"""

from __future__ import annotations

import array
import contextlib
import enum
import errno
import fcntl
import os
import select
import socket
import sys
import termios
from collections.abc import Iterator
from typing import Any, Callable

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from zope.interface import implementer

#: Unread socket bytes discarded at most per L{discard_unread} call (bounds the loop).
MAX_DISCARD = 1 << 20


#: Transport type -> how L{write_now} may send on its instances directly: 0 never (TLS,
#: wrappers, fakes), 1 a TCP connection (its socket's send), 2 Twisted's SerialPort
#: (os.write on its descriptor), 3 another FileDescriptor (its writeSomeData).  Decided once
#: per type (the interface and class checks cost more than the write itself).
_DIRECT_WRITE: dict[type, int] = {}
_SOCKET, _FD, _GENERIC = 1, 2, 3


def _direct_write_type(cls: type) -> int:
    kind = _DIRECT_WRITE.get(cls)
    if kind is None:
        # Wrappers (TLS, policies.ProtocolWrapper) forward unknown attributes to
        # the transport below: its writeSomeData would bypass them (for TLS, put
        # plaintext on the wire).  Only a plain FileDescriptor qualifies.
        if not issubclass(cls, FileDescriptor) or ISSLTransport.implementedBy(cls):
            kind = 0
        else:
            tcp = sys.modules.get("twisted.internet.tcp")
            serial = sys.modules.get("twisted.internet._posixserialport")
            if tcp is not None and issubclass(cls, tcp.Connection):
                kind = _SOCKET
            elif serial is not None and issubclass(cls, serial.SerialPort):
                kind = _FD
            else:
                kind = _GENERIC
        _DIRECT_WRITE[cls] = kind
    return kind


def write_now(transport: Any, data: bytes) -> None:
    """
    C{transport.write(data)}, but sent at once when nothing is queued ahead.

    Twisted's C{FileDescriptor.write} only queues: the bytes go out on the
    next reactor turn, after another epoll round and two epoll_ctl calls.
    On a relay (TCP to serial and back) that is most of the latency of a
    small write.  When the transport's buffer is empty, writing now keeps
    the order; what the kernel does not take is queued as usual (so flow
    control and producers behave as before), and any error is left to the
    normal write path to report.  Only a plain C{FileDescriptor} (TCP
    connection, SerialPort) takes the fast path; anything else (TLS, any
    other wrapper, test fakes) just gets C{write}.  The type check is made
    once per transport type; the per-instance checks (nothing queued,
    connected, not TLS-started, not providing ISSLTransport) every time.
    A TCP connection's socket and a SerialPort's descriptor are written
    directly (what their C{writeSomeData} does, without its layers).
    """
    kind = _DIRECT_WRITE.get(type(transport))
    if kind is None:
        kind = _direct_write_type(type(transport))
    if kind and data:
        try:
            idle = (transport._tempDataLen == 0 and len(transport.dataBuffer) == transport.offset
                    and transport.connected and not transport.disconnecting
                    and not transport._writeDisconnected and not getattr(transport, "TLS", False)
                    and not ("__provides__" in transport.__dict__  # declared per instance
                             and ISSLTransport.providedBy(transport)))
        except AttributeError:
            idle = False
        if idle:
            sent: object
            try:
                if kind == _SOCKET:
                    sent = transport.socket.send(data)
                elif kind == _FD:
                    sent = os.write(transport.fileno(), data)
                else:
                    sent = transport.writeSomeData(data)
            except (OSError, AttributeError):
                sent = 0  # EAGAIN, or an error the normal write path will report
            if type(sent) is int and sent > 0:
                if sent >= len(data):
                    return
                data = data[sent:]
    transport.write(data)


def direct_writer(transport: Any) -> Callable[[bytes], bool] | None:
    """
    For a plain TCP connection or SerialPort (the transports L{write_now}
    writes directly), a function that sends its argument on the socket or
    the serial descriptor at once and returns True, or returns False and
    does nothing when that would not be what C{transport.write} does now
    (something is queued ahead, the connection is closing or closed, TLS
    was started, or the send failed: the caller then takes its general
    path, which queues and reports as usual).  What the kernel does not
    take of a partial send is queued with C{transport.write}.  None for any
    other transport (TLS, wrappers, fakes).  The dedicated relay of the
    common case (one session, passthrough) uses it: the per-write checks of
    L{write_now} without its type lookups and calls (docs/performance.md).
    """
    kind = _direct_write_type(type(transport))
    if kind not in (_SOCKET, _FD) or getattr(transport, "TLS", False):
        return None
    t = transport
    if kind == _SOCKET:
        send = t.socket.send

        def write_socket(data: bytes) -> bool:
            if (t._tempDataLen or t.offset != len(t.dataBuffer) or not t.connected
                    or t.disconnecting or t._writeDisconnected or t.TLS):
                return False
            try:
                sent = send(data)
            except OSError:
                return False
            if sent < len(data):
                t.write(data[sent:])
            return True

        return write_socket
    fd, os_write = t.fileno(), os.write

    def write_fd(data: bytes) -> bool:
        if (t._tempDataLen or t.offset != len(t.dataBuffer) or not t.connected
                or t.disconnecting or t._writeDisconnected):
            return False
        try:
            sent = os_write(fd, data)
        except OSError:
            return False
        if sent < len(data):
            t.write(data[sent:])
        return True

    return write_fd


class TtyEof:
    """
    Tells a hang-up from an empty read on a serial device.

    pyserial opens a port with VMIN=0, VTIME=0, and a tty in that state
    answers C{read()} with 0 bytes whenever nothing is queued, O_NONBLOCK
    or not.  That happens without any hang-up: input that made the
    descriptor readable is flushed before we read it (a Real COM FLUSH,
    RFC 2217 PURGE-DATA or a tcflush by another holder of the tty).
    Twisted takes every empty read as end of file and closes the device
    for everyone ("vanished (hang-up)"), losing what was being written.
    A real hang-up (carrier lost, pty master closed, adapter gone) also
    raises POLLHUP or POLLERR, so an empty read counts only with one of
    those, or when empty reads keep coming (C{limit} in a row) so that a
    descriptor that stays readable with nothing to read cannot spin the loop.
    """

    limit = 64

    def __init__(self) -> None:
        #: Empty reads since the last one that returned data.
        self.streak = 0

    def hung_up(self, fd: int) -> bool:
        """After a read of C{fd} returned no bytes: whether to treat it as end of file."""
        self.streak += 1
        if self.streak >= self.limit:
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)  # POLLHUP/POLLERR/POLLNVAL are always reported
        try:
            events = poller.poll(0)
        except OSError:
            return True
        return any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
                   for _, mask in events)


def read_serial(fd: int, deliver: Callable[[bytes], object], eof: TtyEof) -> object:
    """
    One read of a serial device, as Twisted's C{fdesc.readFromFD} does it
    (EAGAIN/EINTR: nothing; another error: connection lost; data to
    C{deliver}), except that an empty read is end of file only when
    C{eof} says it is a hang-up.
    """
    from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST

    try:
        data = os.read(fd, 8192)
    except OSError as e:
        return None if e.errno in (errno.EAGAIN, errno.EINTR) else CONNECTION_LOST
    if not data:
        return CONNECTION_DONE if eof.hung_up(fd) else None
    eof.streak = 0
    deliver(data)
    return None


#: A read this long from a serial device may have left more behind (ptys give 4095 at most).
_PTY_READ = 4095
#: Bytes gathered from a serial device in one event at most (L{fast_io}).
SERIAL_GATHER = 32768


def fast_io(reactor: Any, transport: Any,
            deliver: Callable[[bytes], object] | None = None) -> bool:
    """
    Let a reactor that offers it (L{nport_twisted._reactor.FastEPollReactor})
    read C{transport} with fewer layers: what Twisted's C{doRead} does for a
    TCP connection (C{recv} of C{bufferSize}, EOF = ConnectionDone, an error =
    ConnectionLost, data to C{deliver}, by default the protocol's
    C{dataReceived}, which a caller may replace by a shortcut that does the
    same) or a SerialPort
    (C{os.read} of 8 KiB, the same rules), without C{_doReadOrWrite}, C{doRead},
    C{readFromFD} and C{_dataReceived} in between.  Only for those two plain
    transports (never TLS or a wrapper).  Returns whether it was registered;
    L{slow_io} undoes it (a closed descriptor's entry is also dropped by
    the reactor when its number is reused).
    """
    add = getattr(reactor, "add_fast_reader", None)
    kind = _direct_write_type(type(transport))
    if add is None or kind not in (_SOCKET, _FD) or getattr(transport, "TLS", False):
        return False
    from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST

    if deliver is None:
        deliver = transport.protocol.dataReceived
    if kind == _SOCKET:
        recv, size = transport.socket.recv, transport.bufferSize

        def read() -> object:
            try:
                data = recv(size)
            except OSError as e:
                return None if e.errno == errno.EAGAIN else CONNECTION_LOST
            if not data:
                return CONNECTION_DONE
            deliver(data)
            return None
    else:
        fd, os_read = transport.fileno(), os.read
        eof = getattr(transport, "tty_eof", None) or TtyEof()

        def read() -> object:
            try:
                data = os_read(fd, 8192)
            except OSError as e:
                return None if e.errno in (errno.EAGAIN, errno.EINTR) else CONNECTION_LOST
            if not data:
                return CONNECTION_DONE if eof.hung_up(fd) else None
            eof.streak = 0
            if len(data) >= _PTY_READ:
                # A pty (and many UART drivers) hands over at most about 4 KiB per
                # read: take what else is there now, up to SERIAL_GATHER, so a busy
                # port costs one delivery (and one send) per gather, not per read.
                # The stream is the same; only where it is cut changes.
                parts = [data]
                total = len(data)
                try:
                    while total < SERIAL_GATHER:
                        more = os_read(fd, 8192)
                        if not more:
                            break
                        parts.append(more)
                        total += len(more)
                        if len(more) < _PTY_READ:
                            break
                except OSError:
                    pass  # EAGAIN: all there was; an error shows on the next read
                data = b"".join(parts) if len(parts) > 1 else data
            deliver(data)
            return None
    add(transport, read)
    return True


def slow_io(reactor: Any, transport: Any) -> None:
    """Undo L{fast_io} (the connection is closing, or its protocol changes)."""
    remove = getattr(reactor, "remove_fast_reader", None)
    if remove is not None:
        remove(transport)


def unsent_bytes(transport: Any) -> int:
    """
    Bytes a transport still holds in user space, not yet given to the
    kernel (0 when it cannot tell).  For a TLS transport, the TCP transport
    under it is asked.
    """
    candidate: Any
    for candidate in (transport, getattr(transport, "transport", None)):
        try:
            return int(len(candidate.dataBuffer) - candidate.offset + candidate._tempDataLen)
        except (AttributeError, TypeError):
            continue
    return 0


def discard_unsent(transport: Any) -> None:
    """Drop what a C{FileDescriptor} holds in its write buffer (serial output flush)."""
    for name, value in (("dataBuffer", b""), ("offset", 0), ("_tempDataBuffer", []),
                        ("_tempDataLen", 0)):
        if hasattr(transport, name):
            setattr(transport, name, value)


def unread_bytes(transport: Any) -> int:
    """Bytes the peer sent that we have not read yet (the socket's kernel receive queue)."""
    if transport is None or ISSLTransport.providedBy(transport):
        return 0
    try:
        buf = array.array("i", [0])
        fcntl.ioctl(transport.getHandle().fileno(), termios.FIONREAD, buf, True)
        return int(buf[0])
    except (AttributeError, OSError, ValueError):
        return 0


def discard_unread(transport: Any, limit: int = MAX_DISCARD) -> int:
    """Read and drop what the peer sent and we have not read yet; return how many bytes."""
    if transport is None or ISSLTransport.providedBy(transport):
        return 0  # TLS records cannot be dropped from under the TLS layer
    dropped = 0
    try:
        sock = transport.getHandle()
        while dropped < limit:
            chunk = sock.recv(65536, socket.MSG_DONTWAIT)
            if not chunk:
                break  # EOF: left for the reactor to notice
            dropped += len(chunk)
    except BlockingIOError:
        pass  # nothing (more) unread: the normal end
    except (AttributeError, OSError, ValueError):
        pass  # not a socket (tests) or the connection is going away
    return dropped


@implementer(IPushProducer)
class BufferProducer:
    """
    Registered (streaming) with a transport to learn the state of its write
    buffer: C{full(True)} when it passes the transport's high-water mark
    (C{pauseProducing}), C{full(False)} when it drains (C{resumeProducing})
    or the connection ends (C{stopProducing}).
    """

    def __init__(self, full: Callable[[bool], object]) -> None:
        self._full = full

    def pauseProducing(self) -> None:
        self._full(True)

    def resumeProducing(self) -> None:
        self._full(False)

    def stopProducing(self) -> None:
        self._full(False)


def tls_handshake_pending(transport: Any) -> bool:
    """
    Whether C{transport} is a TLS transport whose handshake has not finished.
    Twisted's TLS layer buffers application writes until then and reports
    its buffer full (C{pauseProducing}) meanwhile, though nothing is jammed:
    reading must go on, or the handshake never completes.
    """
    return getattr(transport, "_handshakeDone", True) is False


class PeerClosed(enum.Enum):
    """How the peer of a socket ended it (L{peer_closed})."""

    FIN = "closed its side"  # it sends nothing more; what it sent before may be unread
    RESET = "reset the connection"  # RST, or both directions shut: nothing more either way


_POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)


def peer_closed(transport: Any) -> PeerClosed | None:
    """
    Whether the peer of C{transport}'s socket has closed (FIN) or reset it,
    without reading anything: a transport whose reading is paused never
    sees a FIN or RST until it reads again.  None when it has not, or when
    C{transport} has no socket to ask (tests, TLS: the TCP transport below
    is asked).
    """
    candidate: Any
    for candidate in (transport, getattr(transport, "transport", None)):
        try:
            fd = candidate.getHandle().fileno()
        except (AttributeError, OSError, ValueError):
            continue
        if not isinstance(fd, int) or fd < 0:
            continue
        poller = select.poll()
        poller.register(fd, select.POLLIN | _POLLRDHUP)
        try:
            events = poller.poll(0)
        except OSError:
            return None
        mask = events[0][1] if events else 0
        if mask & (select.POLLHUP | select.POLLERR):
            return PeerClosed.RESET
        if mask & _POLLRDHUP:
            return PeerClosed.FIN
        return None
    return None


# --- the TLS stack, imported only when a TLS listener is configured --------------------

#: Twisted modules that import pyOpenSSL when they are imported and it is installed,
#: whether or not anything uses TLS: tcp (through _newtls, for startTLS), posixbase
#: (for listenSSL/connectSSL), endpoints (for the ssl: and tls: strings).
_TLS_IMPORTERS = ("twisted.internet.tcp", "twisted.internet.posixbase",
                  "twisted.internet.endpoints")


@contextlib.contextmanager
def import_without_tls() -> Iterator[bool]:
    """
    Within the block, imports of pyOpenSSL fail, so the Twisted modules in
    L{_TLS_IMPORTERS} that are imported there come up without it (they
    support that: pyOpenSSL is optional to Twisted).  Yields whether it
    hid anything: nothing is done once any of those modules or pyOpenSSL is
    imported (then the TLS stack is already in memory, e.g. under trial).
    L{enable_tls} gives those modules the TLS stack when a TLS listener is
    wanted later.  Nothing of ours uses C{startTLS}, the one feature that
    stays off on connections accepted by a listener made without it.
    """
    modules = sys.modules
    if "OpenSSL" in modules or any(name in modules for name in _TLS_IMPORTERS):
        yield False
        return
    modules["OpenSSL"] = None  # type: ignore[assignment]  # import OpenSSL -> ImportError
    try:
        yield True
    finally:
        if modules.get("OpenSSL", 0) is None:
            del modules["OpenSSL"]


def enable_tls() -> None:
    """
    Import the TLS stack and hand it to the Twisted modules that were
    imported without it (L{import_without_tls}), so C{ssl:} endpoint strings
    and C{listenSSL} work.  Call before building a TLS listener; cheap when
    TLS is already there.  Raises ImportError when pyOpenSSL is missing.
    """
    from OpenSSL.SSL import Error as SSLError
    from twisted.internet import ssl
    from twisted.protocols import _sni, tls

    posixbase = sys.modules.get("twisted.internet.posixbase")
    if posixbase is not None and getattr(posixbase, "tls", True) is None:
        from twisted.internet.interfaces import IReactorSSL
        from zope.interface import classImplements

        posixbase.tls = tls  # type: ignore[attr-defined]
        posixbase.ssl = ssl  # type: ignore[attr-defined]
        classImplements(posixbase.PosixReactorBase, IReactorSSL)  # type: ignore[misc]
    endpoints = sys.modules.get("twisted.internet.endpoints")
    if endpoints is not None and getattr(endpoints, "TLSMemoryBIOFactory", True) is None:
        names = {"SSLError": SSLError, "Certificate": ssl.Certificate,
                 "CertificateOptions": ssl.CertificateOptions, "KeyPair": ssl.KeyPair,
                 "PrivateCertificate": ssl.PrivateCertificate,
                 "optionsForClientTLS": ssl.optionsForClientTLS,
                 "trustRootFromCertificates": ssl.trustRootFromCertificates,
                 "SNIConnectionCreator": _sni.SNIConnectionCreator,
                 "_TLSServerEndpoint": _sni.TLSServerEndpoint,
                 "autoReloadingDirectoryOfPEMs": _sni.autoReloadingDirectoryOfPEMs,
                 "TLSMemoryBIOFactory": tls.TLSMemoryBIOFactory}
        for name, value in names.items():
            setattr(endpoints, name, value)


def chained(d: Deferred[None]) -> Deferred[None]:
    """A new Deferred firing (with None) when C{d} does, leaving C{d}'s result alone.

    Several callers may wait on one close or reload this way without consuming its result.
    """
    out: Deferred[None] = Deferred()

    def fire(result: object) -> object:
        out.callback(None)
        return result

    d.addBoth(fire)
    return out
