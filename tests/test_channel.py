# -*- test-case-name: tests.test_channel -*-
"""
Tests for L{nport_twisted.device.channel}: the serial channel core, driven with a
L{task.Clock} and the shipped L{FakeSerialDevice}.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from nport_twisted.device.channel import IChannelSession, LineEvents, SerialChannel
from nport_twisted.wire.packing import DelimiterProcess, PackingConfig
from nport_twisted.device.adapter import ISerialControl, LineCounters, ModemLines, SerialHandle
from nport_twisted.config.settings import FlowControl, Parity, SerialSettings
from nport_twisted.testing import FakeSerialControl, FakeSerialDevice

CONFIGURED = SerialSettings(baudrate=9600, bytesize=7, parity=Parity.EVEN, stopbits=2)
HOST = SerialSettings(baudrate=38400, flow_control=FlowControl.RTS_CTS)


@implementer(IChannelSession)
class RecordingSession:
    """An L{IChannelSession} that records everything the channel tells it."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.chunks: list[bytes] = []
        self.modem: list[tuple[ModemLines, ModemLines]] = []
        self.errors: list[LineEvents] = []
        self.states: list[bool] = []
        self.paused = False
        self.aborted = False

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)

    def serial_data(self, data: bytes) -> None:
        if self.fail:
            raise ValueError("session bug")
        self.chunks.append(data)

    def modem_lines_changed(self, old: ModemLines, new: ModemLines) -> None:
        self.modem.append((old, new))

    def line_errors(self, events: LineEvents) -> None:
        self.errors.append(events)

    def device_state_changed(self, available: bool) -> None:
        self.states.append(available)

    def pause_input(self) -> None:
        self.paused = True

    def resume_input(self) -> None:
        self.paused = False

    def abort(self) -> None:
        self.aborted = True


def make_channel(device: FakeSerialDevice | None = None, start: bool = True,
                 **kwargs: Any) -> tuple[SerialChannel, FakeSerialDevice, Clock]:
    """A channel on a fake device with a fresh clock, started unless told otherwise."""
    device = device or FakeSerialDevice()
    clock = Clock()
    kwargs.setdefault("settings", CONFIGURED)
    channel = SerialChannel(0, device.path, clock=clock, opener=device.opener, **kwargs)
    if start:
        channel.startService()
    return channel, device, clock


def stop(channel: SerialChannel, device: FakeSerialDevice) -> None:
    """Stop C{channel} and finish the device close as the SerialPort would."""
    d = channel.stopService()
    device.close_complete()
    assert d.called


class FakesTests(SynchronousTestCase):
    def test_recording_session_provides_interface(self) -> None:
        """The test session implements every method of IChannelSession."""
        self.assertTrue(verifyObject(IChannelSession, RecordingSession()))

    def test_fake_control_provides_interface(self) -> None:
        """The shipped FakeSerialControl implements ISerialControl."""
        self.assertTrue(verifyObject(ISerialControl, FakeSerialControl(FakeSerialDevice())))


class SettingsTests(SynchronousTestCase):
    def test_open_applies_configured_settings(self) -> None:
        """Starting opens the device once and applies the configured settings through its control."""
        channel, device, _ = make_channel()
        self.assertTrue(channel.is_open)
        self.assertEqual(device.opens, 1)
        assert device.control is not None
        self.assertEqual(device.control.applied, [CONFIGURED])
        self.assertEqual(channel.actual_settings, CONFIGURED)

    def test_refused_setting_reports_value_in_force(self) -> None:
        """A setting the device refuses is reported with the value still in force."""
        device = FakeSerialDevice()
        device.refuse = {"parity", "bytesize"}
        channel, _, _ = make_channel(device)
        self.assertEqual(channel.actual_settings, attrs.evolve(CONFIGURED, parity=Parity.NONE, bytesize=8))

    def test_apply_settings_live(self) -> None:
        """apply_settings on an open device applies at once, returns what is in force and notifies listeners."""
        device = FakeSerialDevice()
        device.refuse = {"parity"}
        channel, _, _ = make_channel(device)
        changes: list[None] = []
        channel.on_change(lambda: changes.append(None))
        new = SerialSettings(baudrate=57600, parity=Parity.ODD)
        actual = channel.apply_settings(new)
        self.assertEqual(actual, attrs.evolve(new, parity=Parity.NONE))
        self.assertEqual(channel.actual_settings, actual)
        self.assertEqual(channel.settings, new)
        assert device.control is not None
        self.assertEqual(device.control.applied[-1], new)
        self.assertEqual(len(changes), 1)

    def test_apply_settings_while_closed_used_at_open(self) -> None:
        """Settings changed while the device is absent are the ones applied when it opens."""
        device = FakeSerialDevice()
        device.present = False
        channel, _, clock = make_channel(device)
        new = SerialSettings(baudrate=1200)
        self.assertEqual(channel.apply_settings(new), new)
        device.present = True
        clock.advance(0.5)
        assert device.control is not None
        self.assertEqual(device.control.applied, [new])

    def test_control_apply_failure_logged_channel_stays_open(self) -> None:
        """A control whose apply() raises is logged and the device stays open with the requested settings."""

        class Broken(FakeSerialControl):
            def apply(self, settings: SerialSettings) -> SerialSettings:
                raise OSError(22, "Invalid argument")

        device = FakeSerialDevice()
        original = device.opener

        def opener(protocol: Any, path: str, settings: SerialSettings) -> SerialHandle:
            handle = original(protocol, path, settings)
            handle.control = Broken(device)
            return handle

        device.opener = opener  # type: ignore[method-assign]
        channel, _, _ = make_channel(device)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertTrue(channel.is_open)
        self.assertEqual(channel.actual_settings, CONFIGURED)


class MissingDeviceTests(SynchronousTestCase):
    def test_missing_device_logged_once_retried_with_backoff(self) -> None:
        """A missing device is logged once and retried after 0.5, 1, 2 … seconds until it appears."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        device = FakeSerialDevice()
        device.present = False
        channel, _, clock = make_channel(device)
        session = RecordingSession()
        channel.attach(session)
        self.assertFalse(channel.is_open)
        delays = []
        for _ in range(4):
            (call,) = clock.getDelayedCalls()
            delays.append(call.getTime() - clock.seconds())
            clock.advance(delays[-1])
        self.assertEqual(delays, [0.5, 1.0, 2.0, 4.0])
        self.assertEqual(channel.stats.open_failures, 5)
        warnings = [e for e in observer if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("cannot open", warnings[0]["log_format"])
        device.present = True
        (call,) = clock.getDelayedCalls()
        clock.advance(call.getTime() - clock.seconds())
        self.assertTrue(channel.is_open)
        self.assertEqual(session.states, [True])
        assert device.control is not None
        self.assertEqual(device.control.applied, [CONFIGURED])

    def test_backoff_capped(self) -> None:
        """The retry interval grows to at most five seconds."""
        device = FakeSerialDevice()
        device.present = False
        _, _, clock = make_channel(device)
        clock.pump([0.5, 1, 2, 4, 5, 5])
        (call,) = clock.getDelayedCalls()
        self.assertEqual(call.getTime() - clock.seconds(), 5.0)

    def test_vanish_reopens_with_same_settings(self) -> None:
        """A vanished device is logged once, sessions are told, and it reopens with the same settings."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        channel, device, clock = make_channel()
        live = SerialSettings(baudrate=4800, stopbits=2)
        channel.apply_settings(live)
        session = RecordingSession()
        channel.attach(session)
        device.vanish()
        self.assertFalse(channel.is_open)
        self.assertEqual(session.states, [False])
        self.assertIn(session, channel.sessions)
        clock.advance(0.5)  # still absent
        clock.advance(1.0)
        self.assertEqual(channel.stats.open_failures, 2)
        warnings = [e for e in observer if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("vanished", warnings[0]["log_format"])
        device.present = True
        clock.advance(2.0)
        self.assertTrue(channel.is_open)
        self.assertEqual(session.states, [False, True])
        assert device.control is not None
        self.assertEqual(device.control.applied, [live])
        self.assertTrue(channel.write(b"after"))
        self.assertEqual(device.written, b"after")
        self.assertEqual(device.opens, 2)

    def test_write_while_absent_dropped(self) -> None:
        """Writing while the device is absent returns False and counts the bytes as dropped."""
        channel, device, _ = make_channel()
        device.vanish()
        self.assertFalse(channel.write(b"lost"))
        self.assertEqual(channel.stats.serial_tx_dropped, 4)
        self.assertEqual(channel.stats.serial_tx_bytes, 0)

    def test_failure_right_after_open_retried(self) -> None:
        """A device that fails just after opening (EIO on an ioctl) is closed and retried, not raised."""
        calls = []

        class Unplugged(FakeSerialControl):
            def modem_lines(self) -> ModemLines | None:
                raise OSError(5, "Input/output error")

        device = FakeSerialDevice()
        original = device.opener

        def opener(protocol: Any, path: str, settings: SerialSettings) -> SerialHandle:
            handle = original(protocol, path, settings)
            calls.append(handle)
            if len(calls) == 1:
                handle.control = Unplugged(device)
            return handle

        device.opener = opener  # type: ignore[method-assign]
        channel, _, clock = make_channel(device)
        self.assertFalse(channel.is_open)
        self.assertTrue(calls[0].transport.disconnecting)
        self.assertEqual(channel.stats.open_failures, 1)
        clock.advance(0.5)
        self.assertTrue(channel.is_open)
        self.assertIs(channel.control, calls[1].control)

    def test_stop_cancels_retry(self) -> None:
        """Stopping the service while retrying cancels the retry and leaves no timer."""
        device = FakeSerialDevice()
        device.present = False
        channel, _, clock = make_channel(device)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        d = channel.stopService()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(clock.getDelayedCalls(), [])
        device.present = True
        clock.advance(10)
        self.assertEqual(device.opens, 0)

    def test_stop_after_vanish_leaves_no_timer(self) -> None:
        """Stopping after the device vanished cancels the reopen and leaves no pending call."""
        channel, device, clock = make_channel(packing=PackingConfig(force_transmit_ms=100))
        session = RecordingSession()
        channel.attach(session)
        device.receive(b"pending")
        device.vanish()
        self.assertEqual(session.received, b"pending")
        self.successResultOf(channel.stopService())
        self.assertEqual(clock.getDelayedCalls(), [])


class ModemLineTests(SynchronousTestCase):
    def test_dtr_rts_driven(self) -> None:
        """set_dtr/set_rts drive the device's lines and report success."""
        channel, device, _ = make_channel()
        assert device.control is not None
        self.assertEqual((device.control.dtr, device.control.rts), (True, True))
        self.assertTrue(channel.set_dtr(False))
        self.assertTrue(channel.set_rts(False))
        self.assertEqual((device.control.dtr, device.control.rts), (False, False))

    def test_dtr_remembered_across_reopen(self) -> None:
        """DTR/RTS set while the device is absent are applied when it returns."""
        channel, device, clock = make_channel()
        device.vanish()
        self.assertFalse(channel.set_dtr(False))
        self.assertFalse(channel.set_rts(False))
        device.present = True
        clock.advance(0.5)
        assert device.control is not None
        self.assertEqual((device.control.dtr, device.control.rts), (False, False))

    def test_no_modem_lines(self) -> None:
        """A device without modem lines (a pty) refuses DTR and is not polled."""
        channel, _, clock = make_channel(FakeSerialDevice(lines=None))
        self.assertIsNone(channel.modem)
        self.assertFalse(channel.set_dtr(True))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_modem_changes_published(self) -> None:
        """Polling on the clock publishes a modem line change once to every session."""
        channel, device, clock = make_channel(modem_poll_interval=0.1)
        a, b = RecordingSession(), RecordingSession()
        channel.attach(a)
        channel.attach(b)
        device.lines = ModemLines(cts=True, dcd=True)
        clock.advance(0.05)
        self.assertEqual(a.modem, [])
        clock.advance(0.05)
        change = (ModemLines(), ModemLines(cts=True, dcd=True))
        self.assertEqual(a.modem, [change])
        self.assertEqual(b.modem, [change])
        clock.advance(0.1)
        self.assertEqual(a.modem, [change])
        self.assertEqual(channel.modem, ModemLines(cts=True, dcd=True))

    def test_poll_failure_stops_polling(self) -> None:
        """A modem poll that raises is logged and stops polling without closing the device."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        channel, device, clock = make_channel()
        assert device.control is not None

        def broken() -> ModemLines:
            raise OSError(5, "Input/output error")

        device.control.modem_lines = broken  # type: ignore[method-assign]
        clock.advance(0.1)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertTrue(channel.is_open)
        self.assertTrue(any("poll failed" in e["log_format"] for e in observer))


class MultiplexerTests(SynchronousTestCase):
    def test_fan_out(self) -> None:
        """Serial input goes to every attached session and is counted."""
        channel, device, _ = make_channel()
        a, b = RecordingSession(), RecordingSession()
        channel.attach(a)
        channel.attach(b)
        device.receive(b"hello")
        device.receive(b"!")
        self.assertEqual(a.received, b"hello!")
        self.assertEqual(b.received, b"hello!")
        self.assertEqual(channel.stats.serial_rx_bytes, 6)

    def test_no_session_counts_dropped(self) -> None:
        """Serial input with nobody attached is counted as dropped."""
        channel, device, _ = make_channel()
        device.receive(b"abc")
        self.assertEqual(channel.stats.serial_rx_dropped, 3)

    def test_writes_in_fifo_order(self) -> None:
        """Writes from several sessions reach the device in arrival order and are counted."""
        channel, device, _ = make_channel()
        self.assertTrue(channel.write(b"one "))
        self.assertTrue(channel.write(b"two "))
        self.assertTrue(channel.write(b"three"))
        self.assertEqual(device.written, b"one two three")
        self.assertEqual(channel.stats.serial_tx_bytes, 13)

    def test_connection_counters(self) -> None:
        """Attaching and detaching sessions updates total and active connection counts."""
        channel, _, _ = make_channel()
        a, b = RecordingSession(), RecordingSession()
        channel.attach(a)
        channel.attach(b)
        channel.attach(a)
        channel.detach(a)
        self.assertEqual((channel.stats.connections_total, channel.stats.connections_active), (2, 1))
        self.assertEqual(channel.sessions, (b,))

    def test_device_backpressure_pauses_sessions(self) -> None:
        """The device pausing the channel's producer pauses every session, also ones attached later."""
        channel, device, _ = make_channel()
        a = RecordingSession()
        channel.attach(a)
        assert device.transport is not None
        producer = device.transport.producer
        self.assertTrue(device.transport.streaming)
        producer.pauseProducing()
        late = RecordingSession()
        channel.attach(late)
        self.assertTrue(a.paused)
        self.assertTrue(late.paused)
        producer.resumeProducing()
        self.assertFalse(a.paused)
        self.assertFalse(late.paused)

    def test_vanish_while_paused_resumes_sessions(self) -> None:
        """Sessions paused by the device are resumed when it vanishes and stay usable after the reopen."""
        channel, device, clock = make_channel()
        a = RecordingSession()
        channel.attach(a)
        assert device.transport is not None
        device.transport.producer.pauseProducing()
        device.vanish()
        self.assertFalse(a.paused)
        device.present = True
        clock.advance(0.5)
        late = RecordingSession()
        channel.attach(late)
        self.assertFalse(late.paused)

    def test_jammed_session_skipped_when_ignoring(self) -> None:
        """With ignore_jammed a jammed session is skipped, its bytes counted, and the reader keeps going."""
        channel, device, _ = make_channel(ignore_jammed=True)
        a, b = RecordingSession(), RecordingSession()
        channel.attach(a)
        channel.attach(b)
        channel.set_jammed(a, True)
        device.receive(b"12345")
        assert device.transport is not None
        self.assertEqual(device.transport.producerState, "producing")
        self.assertEqual(a.received, b"")
        self.assertEqual(b.received, b"12345")
        self.assertEqual(channel.stats.serial_rx_dropped, 5)
        channel.set_jammed(a, False)
        device.receive(b"6")
        self.assertEqual(a.received, b"6")

    def test_jammed_session_pauses_reader(self) -> None:
        """Without ignore_jammed a jammed session pauses the serial reader until it drains."""
        channel, device, _ = make_channel(ignore_jammed=False)
        a, b = RecordingSession(), RecordingSession()
        channel.attach(a)
        channel.attach(b)
        transport = device.transport
        assert transport is not None
        channel.set_jammed(a, True)
        channel.set_jammed(b, True)
        self.assertEqual(transport.producerState, "paused")
        channel.set_jammed(a, False)
        self.assertEqual(transport.producerState, "paused")
        channel.detach(b)
        self.assertEqual(transport.producerState, "producing")

    def test_ignore_jammed_changed_at_run_time(self) -> None:
        """Turning ignore_jammed on while a session is jammed resumes the serial reader at once."""
        channel, device, _ = make_channel(ignore_jammed=False)
        a = RecordingSession()
        channel.attach(a)
        channel.set_jammed(a, True)
        assert device.transport is not None
        self.assertEqual(device.transport.producerState, "paused")
        channel.ignore_jammed = True
        self.assertEqual(device.transport.producerState, "producing")
        channel.ignore_jammed = False
        self.assertEqual(device.transport.producerState, "paused")

    def test_reopen_while_jammed_pauses_new_reader(self) -> None:
        """A device reopened while a session is jammed starts with its reader paused."""
        channel, device, clock = make_channel()
        a = RecordingSession()
        channel.attach(a)
        channel.set_jammed(a, True)
        device.vanish()
        device.present = True
        clock.advance(0.5)
        assert device.transport is not None
        self.assertEqual(device.transport.producerState, "paused")

    def test_failing_session_detached_others_served(self) -> None:
        """A session raising from serial_data is logged, detached and aborted; others still get data."""
        channel, device, _ = make_channel()
        good1, bad, good2 = RecordingSession(), RecordingSession(fail=True), RecordingSession()
        for s in (good1, bad, good2):
            channel.attach(s)
        device.receive(b"data")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertTrue(bad.aborted)
        self.assertEqual(channel.sessions, (good1, good2))
        self.assertEqual(good1.received, b"data")
        self.assertEqual(good2.received, b"data")
        assert device.transport is not None
        self.assertFalse(device.transport.disconnecting)
        device.receive(b"more")
        self.assertEqual(good2.received, b"datamore")
        self.assertEqual(self.flushLoggedErrors(ValueError), [])


class PackingTests(SynchronousTestCase):
    def test_force_transmit_on_clock(self) -> None:
        """Force transmit releases buffered bytes when the clock reaches last byte + t."""
        device = FakeSerialDevice(lines=None)  # no modem poller: only the packing timer
        channel, _, clock = make_channel(device, packing=PackingConfig(force_transmit_ms=50))
        a = RecordingSession()
        channel.attach(a)
        device.receive(b"ab")
        clock.advance(0.03)
        device.receive(b"cd")
        clock.advance(0.049)
        self.assertEqual(a.chunks, [])
        clock.advance(0.001)
        self.assertEqual(a.chunks, [b"abcd"])
        self.assertEqual(channel.stats.frames, 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_delimiter(self) -> None:
        """A delimiter sends the frame at once; Strip removes it."""
        config = PackingConfig(delimiter1=0x0D, delimiter_process=DelimiterProcess.STRIP)
        channel, device, _ = make_channel(packing=config)
        a = RecordingSession()
        channel.attach(a)
        device.receive(b"abc\rde")
        self.assertEqual(a.chunks, [b"abc"])
        device.receive(b"\r")
        self.assertEqual(a.chunks, [b"abc", b"de"])

    def test_packing_length_and_flush_on_stop(self) -> None:
        """Packing length sends fixed-size frames; the remainder goes out when the channel stops."""
        channel, device, _ = make_channel(packing=PackingConfig(packing_length=4))
        a = RecordingSession()
        channel.attach(a)
        device.receive(b"abcdefghij")
        self.assertEqual(a.chunks, [b"abcd", b"efgh"])
        stop(channel, device)
        self.assertEqual(a.chunks, [b"abcd", b"efgh", b"ij"])
        self.assertEqual(channel.stats.frames, 3)

    def test_set_packing_sends_pending(self) -> None:
        """Replacing the packing rules sends what the old packer held."""
        channel, device, _ = make_channel(packing=PackingConfig(packing_length=8))
        a = RecordingSession()
        channel.attach(a)
        device.receive(b"xyz")
        channel.set_packing(PackingConfig())
        self.assertEqual(a.chunks, [b"xyz"])
        device.receive(b"1")
        self.assertEqual(a.chunks, [b"xyz", b"1"])


class LineCounterTests(SynchronousTestCase):
    def test_counter_deltas_become_events(self) -> None:
        """Kernel counter deltas become LineEvents for sessions and add to the statistics."""
        device = FakeSerialDevice(counters=LineCounters())
        channel, _, clock = make_channel(device)
        a = RecordingSession()
        channel.attach(a)
        device.counters = LineCounters(frame=2, parity=1, overrun=1, buf_overrun=3, brk=1)
        clock.advance(0.1)
        self.assertEqual(a.errors, [LineEvents(parity=1, framing=2, overrun=1, buffer_overrun=3, breaks=1)])
        device.counters = LineCounters(frame=3, parity=1, overrun=1, buf_overrun=3, brk=1)
        clock.advance(0.1)
        clock.advance(0.1)
        self.assertEqual(a.errors[1:], [LineEvents(framing=1)])
        s = channel.stats
        self.assertEqual((s.parity_errors, s.framing_errors, s.overrun_errors, s.breaks), (1, 3, 4, 1))

    def test_counters_without_modem_lines_still_polled(self) -> None:
        """A device with counters but no modem lines is still polled for line events."""
        device = FakeSerialDevice(lines=None, counters=LineCounters())
        channel, _, clock = make_channel(device)
        a = RecordingSession()
        channel.attach(a)
        device.counters = LineCounters(brk=1)
        clock.advance(0.1)
        self.assertEqual(a.errors, [LineEvents(breaks=1)])


class HoldTests(SynchronousTestCase):
    def test_hold_release_opens_and_closes(self) -> None:
        """Without keep_open the first hold opens the device and the last release closes it."""
        channel, device, clock = make_channel(keep_open=False)
        self.assertEqual(device.opens, 0)
        channel.hold()
        channel.hold()
        self.assertTrue(channel.is_open)
        self.successResultOf(channel.release())
        self.assertFalse(device.closing)
        d = channel.release()
        self.assertTrue(device.closing)
        self.assertNoResult(d)
        device.close_complete()
        self.assertIsNone(self.successResultOf(d))
        self.assertFalse(channel.is_open)
        self.assertEqual(device.opens, 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_override_forgotten_after_close(self) -> None:
        """A host override is in force until an orderly close; apply_settings meanwhile does not clobber it."""
        channel, device, _ = make_channel(keep_open=False)
        channel.hold()
        self.assertEqual(channel.override_settings(HOST), HOST)
        configured = SerialSettings(baudrate=2400)
        self.assertEqual(channel.apply_settings(configured), HOST)
        assert device.control is not None
        self.assertEqual(device.control.applied[-1], HOST)
        self.assertEqual(channel.actual_settings, HOST)
        self.assertEqual(channel.settings, configured)
        channel.release()
        device.close_complete()
        self.assertEqual(channel.effective_settings, configured)
        channel.hold()
        self.assertEqual(device.control.applied, [configured])

    def test_override_survives_vanish(self) -> None:
        """A device that vanishes (no orderly close) is reopened with the host's settings."""
        channel, device, clock = make_channel(keep_open=False)
        channel.hold()
        channel.override_settings(HOST)
        device.vanish()
        device.present = True
        clock.advance(0.5)
        assert device.control is not None
        self.assertEqual(device.control.applied, [HOST])

    def test_hold_during_close_reopens(self) -> None:
        """A hold arriving while the last release's close is in progress reopens the device after it."""
        channel, device, _ = make_channel(keep_open=False)
        channel.hold()
        d = channel.release()
        channel.hold()
        device.close_complete()
        self.successResultOf(d)
        self.assertTrue(channel.is_open)
        self.assertEqual(device.opens, 2)

    def test_hold_before_start_opens_at_start(self) -> None:
        """A hold taken before the service starts opens the device when it starts."""
        channel, device, _ = make_channel(keep_open=False, start=False)
        channel.hold()
        self.assertEqual(device.opens, 0)
        channel.startService()
        self.assertTrue(channel.is_open)

    def test_repeated_hold_while_missing_keeps_one_retry(self) -> None:
        """Holding again while the device is missing leaves exactly one retry, which stop cancels."""
        device = FakeSerialDevice()
        device.present = False
        channel, _, clock = make_channel(device, keep_open=False)
        channel.hold()
        channel.hold()
        channel.hold()
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.successResultOf(channel.stopService())
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_set_keep_open(self) -> None:
        """set_keep_open(True) opens the device now and set_keep_open(False) closes it without holders."""
        channel, device, _ = make_channel(keep_open=False)
        self.successResultOf(channel.set_keep_open(True))
        self.assertTrue(channel.is_open)
        d = channel.set_keep_open(False)
        self.assertTrue(device.closing)
        device.close_complete()
        self.successResultOf(d)
        self.assertFalse(channel.is_open)


class StopTests(SynchronousTestCase):
    def test_stop_closes_device(self) -> None:
        """stopService closes the device, fires when the close completes and leaves no timer."""
        channel, device, clock = make_channel()
        a = RecordingSession()
        channel.attach(a)
        self.assertNotEqual(clock.getDelayedCalls(), [])  # the modem poller
        d: Deferred[None] = channel.stopService()
        self.assertTrue(device.closing)
        self.assertNoResult(d)
        device.close_complete()
        self.successResultOf(d)
        self.assertFalse(channel.is_open)
        self.assertEqual(a.states, [False])
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(10)
        self.assertEqual(device.opens, 1)

    def test_stop_unregisters_write_producer(self) -> None:
        """Closing unregisters the channel's producer so a paused one cannot keep the port open."""
        channel, device, _ = make_channel()
        transport = device.transport
        assert transport is not None
        transport.producer.pauseProducing()
        channel.stopService()
        self.assertIsNone(transport.producer)


class DirectWriteTests(SynchronousTestCase):
    """SerialChannel.write tries the device's direct writer first, then queues as before."""

    def test_direct_then_queued_then_dropped(self) -> None:
        """Taken at once and counted; refused: the queued path; closed: dropped and counted."""
        channel, device, _ = make_channel()
        taken: list[bytes] = []
        channel.direct_write = lambda data: taken.append(data) is None
        self.assertTrue(channel.write(b"now"))
        channel.direct_write = lambda data: False
        self.assertTrue(channel.write(b"later"))
        self.assertEqual((taken, device.written), ([b"now"], b"later"))
        self.assertEqual(channel.stats.serial_tx_bytes, 8)
        stop(channel, device)
        self.assertIsNone(channel.direct_write)  # cleared with the device
        self.assertFalse(channel.write(b"gone"))
        self.assertEqual(channel.stats.serial_tx_dropped, 4)


class DeliveryFastPathTests(SynchronousTestCase):
    """
    One attached, unjammed session takes the channel's short delivery path;
    several sessions, a jam or a failure must give what the general path gives.
    """

    def test_single_session_gets_every_chunk(self) -> None:
        """One session receives the bytes in order and they are counted as frames."""
        channel, device, _ = make_channel()
        a = RecordingSession()
        channel.attach(a)
        device.receive(b"ab")
        device.receive(b"cd")
        self.assertEqual((a.received, channel.stats.frames), (b"abcd", 2))

    def test_single_failing_session_detached_device_kept(self) -> None:
        """A lone session that raises is logged, detached and aborted; the device stays open."""
        channel, device, _ = make_channel()
        bad = RecordingSession(fail=True)
        channel.attach(bad)
        device.receive(b"x")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertTrue(bad.aborted)
        self.assertEqual(channel.sessions, ())
        self.assertTrue(channel.is_open)

    def test_second_session_takes_general_path(self) -> None:
        """With a second session attached both get the bytes; one failing does not stop the other."""
        channel, device, _ = make_channel()
        good, bad = RecordingSession(), RecordingSession(fail=True)
        channel.attach(good)
        channel.attach(bad)
        device.receive(b"hi")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual((good.received, channel.sessions), (b"hi", (good,)))

    def test_jammed_single_session_skipped_with_ignore_jammed(self) -> None:
        """A jammed lone session is skipped (and the bytes counted) under "ignore jammed IP"."""
        channel, device, _ = make_channel(ignore_jammed=True)
        a = RecordingSession()
        channel.attach(a)
        channel.set_jammed(a, True)
        device.receive(b"lost")
        channel.set_jammed(a, False)
        device.receive(b"kept")
        self.assertEqual((a.received, channel.stats.serial_rx_dropped), (b"kept", 4))

    def test_packing_on_goes_through_the_packer(self) -> None:
        """With a packing rule set, one session still gets frames only as the packer cuts them."""
        channel, device, _ = make_channel(packing=PackingConfig(packing_length=4))
        a = RecordingSession()
        channel.attach(a)
        device.receive(b"abc")
        self.assertEqual(a.chunks, [])
        device.receive(b"de")
        self.assertEqual(a.chunks, [b"abcd"])

    def test_fast_serial_reader_same_as_the_protocol(self) -> None:
        """
        The fast reader's delivery (used under FastEPollReactor) gives what
        the serial protocol gives: one session directly; two sessions,
        packing or a jam through the general path.
        """
        channel, device, _ = make_channel(ignore_jammed=True)
        a, b = RecordingSession(), RecordingSession()
        channel.attach(a)
        channel._fast_serial(b"one")
        channel.attach(b)
        channel._fast_serial(b"two")
        channel.set_jammed(b, True)
        channel._fast_serial(b"three")
        channel.set_packing(PackingConfig(packing_length=4))
        channel.set_jammed(b, False)
        channel.detach(b)
        channel._fast_serial(b"abcdef")
        self.assertEqual(a.chunks, [b"one", b"two", b"three", b"abcd"])
        self.assertEqual(b.chunks, [b"two"])
        self.assertEqual((channel.stats.serial_rx_bytes, channel.stats.serial_rx_dropped),
                         (17, 5))
