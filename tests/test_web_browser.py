"""
End-to-end test of the web console in a real browser: headless Chromium
(Debian's chromium and chromium-driver) driven by selenium, against the
whole service running in this process on the real reactor (HTTP on
127.0.0.1 with a port offset, a fake serial device).

The browser sets the first password with the setup token from the log,
logs in, changes port 1's baud rate and operating mode (Real COM -> TCP
Server), does Save/Restart, and the test checks that the running port
changed: the device runs at the new baud rate and a TCP client reaching
4001+offset talks to it.  The monitor page must then show the bytes sent
without being reloaded.

Nothing is downloaded: selenium gets the Debian binaries' paths and
SE_OFFLINE=true.  Set NPORT_SCREENSHOTS=DIR to keep the screenshots (the
ones in docs/screenshots were made so).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.testing import EventLoggingObserver
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SkipTest, TestCase

from nport_twisted.config.store import SettingsStore
from nport_twisted.server import NPortService
from nport_twisted.config.settings import DeviceConfig, Identity, OperatingSettings, OpMode, PortConfig
from nport_twisted.testing import FakeSerialDevice
from nport_twisted.web import WebConsole, web_services
from tests.e2e_util import free_port_offset, poll_until, tcp_connect

CHROMIUM = os.environ.get("NPORT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("NPORT_CHROMEDRIVER", "/usr/bin/chromedriver")
PASSWORD = "plant floor 42"
WAIT = 15.0


def _missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (Debian package {package})"
    return None


def start_browser(profile: str) -> Any:
    """Headless Chromium that talks to nothing but loopback."""
    os.environ["SE_OFFLINE"] = "true"  # selenium manager must not download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


class BrowserTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        why = _missing()
        if why:
            raise SkipTest(why)
        self.offset = free_port_offset(tcp=(80, 950, 951, 966, 967, 4001, 4002), udp=())
        self.device = FakeSerialDevice("/dev/ttyUSB0")
        self.device2 = FakeSerialDevice("/dev/ttyUSB1")
        devices = {d.path: d for d in (self.device, self.device2)}

        def opener(protocol: Any, path: str, settings: Any) -> Any:
            return devices[path].opener(protocol, path, settings)

        self.path = os.path.abspath(self.mktemp())
        config = DeviceConfig(
            identity=Identity(mac="00:90:E8:4A:2C:17", firmware="1.0.0"),
        ).with_port_count(2, OpMode.REAL_COM)
        config = config.replace_port(
            1, PortConfig(operating=OperatingSettings(mode=OpMode.TCP_SERVER))
        )
        self.server = NPortService(
            reactor,
            list(devices),
            config,
            SettingsStore(self.path),
            opener,
            port_offset=self.offset,
            interface="127.0.0.1",
        )
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.console = WebConsole(self.server)
        for svc in web_services(self.server, console=self.console):
            svc.setServiceParent(self.server)
        self.server.startService()
        self.addCleanup(self._stop_server)
        self.base = f"http://127.0.0.1:{self.offset + 80}"
        self.shots = os.environ.get("NPORT_SCREENSHOTS") or os.path.abspath(self.mktemp())
        os.makedirs(self.shots, exist_ok=True)
        self.profile = tempfile.mkdtemp(prefix="nport-chromium-")
        self.addCleanup(shutil.rmtree, self.profile, True)
        self.driver: Any = None

    def _stop_server(self) -> Deferred[None]:
        stopped: Deferred[None] = self.server.stopService()
        for device in (self.device, self.device2):
            if device.closing:
                device.close_complete()  # the fake device closes when asked
        return stopped

    def tearDown(self) -> Deferred[None] | None:
        if self.driver is not None:
            return deferToThread(self.driver.quit)
        return None

    def in_browser(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run blocking selenium calls off the reactor thread (the service keeps running)."""
        return deferToThread(f, *args)

    def setup_token(self) -> str:
        """The one-time setup token, as an administrator reads it in the log."""
        for event in self.events:
            if "token" in event and "setup token" in event.get("log_format", ""):
                return str(event["token"])
        self.fail("no setup token in the log")

    # -- steps, run in a thread ------------------------------------------------------------------

    def _until(self, condition: Callable[[Any], Any]) -> Any:
        """Wait for C{condition}; a page being replaced meanwhile is not an error."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, WAIT, ignored_exceptions=(WebDriverException,)).until(
            condition
        )

    def _text_in_page(self, text: str) -> None:
        from selenium.webdriver.common.by import By

        self._until(lambda d: text in d.find_element(By.TAG_NAME, "body").text)

    def _shot(self, name: str) -> None:
        self.driver.save_screenshot(os.path.join(self.shots, f"{name}.png"))

    def _set_password_and_login(self, token: str) -> None:
        from selenium.webdriver.common.by import By

        d = self.driver
        d.get(self.base + "/")
        # "/" is the set-password page itself (an NPort answers "/" with 200, no redirect).
        self._until(lambda d: d.find_elements(By.ID, "setup_token"))
        self.assertTrue(d.current_url.endswith(":%d/" % (self.offset + 80)))
        self.assertEqual(d.title, "NPort Web Console")
        d.find_element(By.ID, "setup_token").send_keys(token)
        d.find_element(By.ID, "new_password").send_keys(PASSWORD)
        d.find_element(By.ID, "new_password2").send_keys(PASSWORD)
        d.find_element(By.ID, "set-password").click()
        self._until(lambda d: d.current_url.endswith("/overview"))
        # Log out and in again, as a user would after the first start.
        d.find_element(By.CSS_SELECTOR, "form.logout button").click()
        self._until(lambda d: d.current_url.endswith("/login"))
        self._shot("login")
        d.find_element(By.ID, "password").send_keys("wrong password")
        d.find_element(By.ID, "login").click()
        self._text_in_page("Wrong password.")
        d.find_element(By.ID, "password").send_keys(PASSWORD)
        d.find_element(By.ID, "login").click()
        self._until(lambda d: d.current_url.endswith("/overview"))
        self._text_in_page("Model name")
        self._shot("overview")

    def _change_port1(self) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        d = self.driver
        d.find_element(By.CSS_SELECTOR, 'a[href="/serial?port=1"]').click()
        self._text_in_page("Serial Settings - Port 1")
        Select(d.find_element(By.ID, "baudrate")).select_by_visible_text("9600")
        alias = d.find_element(By.ID, "alias")
        alias.clear()
        alias.send_keys("this alias is far too long")
        # The input's maxlength is the validator's limit (issue 11): the browser keeps 15.
        self.assertEqual(alias.get_attribute("value"), "this alias is f")
        alias.clear()
        alias.send_keys("weigh scale")
        d.find_element(By.CSS_SELECTOR, 'button[name="Submit"]').click()
        self._text_in_page("Settings stored")
        self._shot("serial-settings")

        d.find_element(By.CSS_SELECTOR, 'a[href="/operating?port=1"]').click()
        self._text_in_page("Operating Settings - Port 1")
        self.assertTrue(d.find_elements(By.ID, "data_port"))
        alive = d.find_element(By.ID, "tcp_alive_check_min")
        alive.clear()
        alive.send_keys("9x")
        d.find_element(By.CSS_SELECTOR, 'button[name="Submit"]').click()
        # shown next to the field
        self._until(
            lambda d: d.find_element(By.ID, "tcp_alive_check_min-error").text
            == "must be a whole number"
        )
        Select(d.find_element(By.ID, "mode")).select_by_value("tcp-server")
        # The script reloads the page with the TCP Server fields.
        self._until(lambda d: d.find_elements(By.ID, "local_tcp_port"))
        self.assertFalse(d.find_elements(By.ID, "data_port"))
        self._shot("operating-settings")
        d.find_element(By.CSS_SELECTOR, 'button[name="Submit"]').click()
        self._text_in_page("Settings stored")

        d.find_element(By.CSS_SELECTOR, 'a[href="/saverestart"]').click()
        d.find_element(By.ID, "save-restart").click()
        self._text_in_page("Save/Restart OK")

    def _monitor(self) -> None:
        from selenium.webdriver.common.by import By

        d = self.driver
        d.find_element(By.CSS_SELECTOR, 'a[href="/monitor"]').click()
        self._text_in_page("Async Settings")
        self._until(
            lambda d: int(d.find_element(By.ID, "monitor").get_attribute("data-updates") or 0) >= 1
        )

    def _monitor_shows(self, key: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        cell = f'[data-port="1"][data-key="{key}"]'
        self._until(lambda d: d.find_element(By.CSS_SELECTOR, cell).text == text)

    def _graph(self) -> tuple[str, int, int]:
        """Port 1's Rx line: its points, the bytes of its last sample, and draws so far."""
        from selenium.webdriver.common.by import By

        d = self.driver
        line = d.find_element(By.CSS_SELECTOR, '#graphs figure[data-port="1"] svg polyline.rx')
        draws = int(d.find_element(By.ID, "graphs").get_attribute("data-draws") or 0)
        return line.get_attribute("points") or "", int(line.get_attribute("data-last") or 0), draws

    def _graph_moves(self, before: tuple[str, int, int]) -> tuple[str, int, int]:
        """Wait until port 1's Rx line was redrawn with other points and bytes in its last sample."""
        result: list[tuple[str, int, int]] = []

        def moved(d: Any) -> bool:
            now = self._graph()
            result[:] = [now]
            return now[2] > before[2] and now[0] != before[0] and now[1] > 0

        self._until(moved)
        return result[0]

    # -- the test --------------------------------------------------------------------------------

    @inlineCallbacks
    def test_set_password_change_port_and_save(self) -> Generator[Deferred[Any], Any, None]:
        """Set the password, log in, change baud rate and mode, save: the running port changed."""
        self.driver = yield self.in_browser(start_browser, self.profile)
        yield self.in_browser(self._set_password_and_login, self.setup_token())
        self.assertTrue(self.server.config.password.verify(PASSWORD))
        self.assertFalse(
            self.server.ports[0].channel.is_open
        )  # Real COM: closed until a host connects

        yield self.in_browser(self._change_port1)
        port = self.server.ports[0]
        self.assertEqual(port.config.operating.mode, OpMode.TCP_SERVER)
        self.assertEqual(port.config.serial.alias, "weigh scale")
        yield poll_until(lambda: self.server.ports[0].channel.is_open, what="port 1 opened")
        self.assertEqual(self.device.in_force.baudrate, 9600)
        self.assertEqual(port.channel.actual_settings.baudrate, 9600)
        self.assertEqual(
            SettingsStore(self.path).load().ports[0].operating.mode, OpMode.TCP_SERVER
        )

        # The new TCP Server listener carries data to the device.
        client = yield tcp_connect(reactor, self.offset + 4001)

        def disconnect() -> Deferred[None]:
            client.transport.loseConnection()
            return client.closed

        self.addCleanup(disconnect)
        client.transport.write(b"HELLO-NPORT\r\n")
        yield poll_until(
            lambda: self.device.written == b"HELLO-NPORT\r\n", what="bytes at the device"
        )

        # The monitor refreshes itself: the bytes show up without a reload.
        yield self.in_browser(self._monitor)
        yield self.in_browser(self._monitor_shows, "mode", "TCP Server")
        yield self.in_browser(self._monitor_shows, "tx", "13")
        self.device.receive(b"0123456789")
        yield self.in_browser(self._monitor_shows, "rx", "10")
        yield self.in_browser(self._monitor_shows, "baudrate", "9600")
        yield self.in_browser(self._shot, "monitor")

        # The graphs (inline SVG from /api/v1/history) move while bytes flow.
        yield self.in_browser(self._until, lambda d: self._graph()[2] >= 1)
        before = yield self.in_browser(self._graph)
        from twisted.internet.task import LoopingCall

        flow = LoopingCall(self.device.receive, b"g" * 2000)
        flow.start(0.2)
        try:
            after = yield self.in_browser(self._graph_moves, before)
        finally:
            flow.stop()
        self.assertGreater(after[1], 0)
        yield self.in_browser(self.driver.execute_script,
                              "document.getElementById('graphs-title').scrollIntoView();")
        yield self.in_browser(self._shot, "monitor-graphs")

    # -- issue 11: conflicts, requested/in force, a phone's width ---------------------------------

    def _conflict_refused(self) -> None:
        from selenium.webdriver.common.by import By

        d = self.driver
        d.get(self.base + "/operating?port=2")
        field = d.find_element(By.ID, "local_tcp_port")
        field.clear()
        field.send_keys("966")
        d.find_element(By.CSS_SELECTOR, 'button[name="Submit"]').click()
        self._until(
            lambda d: "is also port 1's command port"
            in d.find_element(By.ID, "local_tcp_port-error").text
        )
        self._shot("port-conflict")

    def _refused_setting_shown(self) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        d = self.driver
        d.get(self.base + "/serial?port=2")
        Select(d.find_element(By.ID, "bytesize")).select_by_visible_text("7")
        d.find_element(By.CSS_SELECTOR, 'button[name="Submit"]').click()
        self._text_in_page("Settings stored")
        d.find_element(By.CSS_SELECTOR, 'a[href="/saverestart"]').click()
        d.find_element(By.ID, "save-restart").click()
        self._text_in_page("Save/Restart OK")
        d.get(self.base + "/serial?port=2")
        self._until(
            lambda d: d.find_element(By.ID, "bytesize-refused").text == "requested 7, in force 8"
        )
        self._shot("requested-in-force")
        d.get(self.base + "/monitor")
        cell = '[data-port="2"][data-key="bytesize"]'
        self._until(lambda d: d.find_element(By.CSS_SELECTOR, cell).text == "requested 7, in force 8")

    def _phone_width(self) -> dict[str, tuple[int, int]]:
        """scrollWidth and viewport width of each page at 390 px (an iPhone 12-14)."""
        d = self.driver
        d.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True},
        )
        widths = {}
        for path in ("/overview", "/basic", "/network", "/serial?port=1", "/operating?port=1",
                     "/operating?port=2", "/accessible", "/warning", "/password",
                     "/factory", "/config", "/saverestart", "/monitor", "/monitoring"):
            d.get(self.base + path)
            self._text_in_page("Main Menu")
            widths[path] = d.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth];"
            )
        self._shot("phone-monitor")
        return widths

    @inlineCallbacks
    def test_truthful_console_on_a_phone(self) -> Generator[Deferred[Any], Any, None]:
        """A port conflict is refused next to its field, a refused setting reads "requested 7,
        in force 8" (serial page and monitor), and every page fits a 390 px phone."""
        self.device2.refuse = {"bytesize"}  # as a pty refuses 7 data bits
        self.driver = yield self.in_browser(start_browser, self.profile)
        yield self.in_browser(self._set_password_and_login, self.setup_token())
        yield self.in_browser(self._conflict_refused)
        self.assertEqual(self.server.config.ports[1].operating.local_tcp_port, 0)
        self.assertFalse(self.console.has_pending)
        yield self.in_browser(self._refused_setting_shown)
        self.assertEqual(self.device2.in_force.bytesize, 8)
        widths = yield self.in_browser(self._phone_width)
        for path, (scroll, viewport) in widths.items():
            self.assertEqual(viewport, 390, path)
            self.assertLessEqual(scroll, viewport, path)
