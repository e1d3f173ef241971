"""
Tests for nport-realtty's command lines: L{options.RealTtyOptions} (the
console script and C{twistd nport realtty}), C{twistd nport --realtty FILE}
beside the server, and the service they build.
"""

from __future__ import annotations

import os
import pty

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.tap import Options, makeService
from nport_twisted.tools.realtty.config import OnClose
from nport_twisted.tools.realtty.options import RealTtyOptions, gnu_order
from nport_twisted.tools.realtty.service import RealTtyService, resolve_gid
from tests.test_realtty_config import MOXA_CF


def _parse(*args: str) -> RealTtyOptions:
    options = RealTtyOptions()
    options.parseOptions(list(args))
    return options


class OptionsTests(SynchronousTestCase):
    """nport-realtty HOST[:N] --link PATH, and --config FILE."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def cf(self, text: str = MOXA_CF) -> str:
        path = os.path.join(self.dir, "npreal2d.cf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_one_port(self) -> None:
        """HOST:N --link PATH (options after the address, as GNU tools allow)."""
        link = os.path.join(self.dir, "ttyNP0")
        config = _parse("192.168.127.254:2", "--link", link, "--format", "7E1",
                        "--on-close", "keep", "--ssl")["realtty_config"]
        (port,) = config.ports
        self.assertEqual((port.link, port.host, port.data_port, port.command_port),
                         (link, "192.168.127.254", 951, 967))
        self.assertEqual((port.bytesize, port.parity, port.tls, port.on_close),
                         (7, "E", True, OnClose.KEEP))
        self.assertEqual(config.alive_timeout, 60.0)

    def test_explicit_ports(self) -> None:
        """--data-port/--command-port override the numbers of N."""
        port = _parse("h", "--link", os.path.join(self.dir, "x"), "--data-port", "10950",
                      "--command-port", "10966")["realtty_config"].ports[0]
        self.assertEqual((port.data_port, port.command_port), (10950, 10966))

    def test_npreal2d_cf(self) -> None:
        """--config reads MOXA's file unchanged; --link-dir moves its ttyrNN/curNN links."""
        config = _parse("--config", self.cf(), "--link-dir", self.dir, "--mode", "0600")[
            "realtty_config"]
        self.assertEqual([p.link for p in config.ports],
                         [os.path.join(self.dir, f"ttyr0{n}") for n in range(4)])
        self.assertEqual(config.ports[1].callout, os.path.join(self.dir, "cur01"))
        self.assertEqual({p.mode for p in config.ports}, {0o600})

    def test_errors(self) -> None:
        """Usage errors name the problem."""
        link = os.path.join(self.dir, "ttyNP0")
        blocker = os.path.join(self.dir, "ttyr00")
        with open(blocker, "w"):
            pass
        cases = [
            ((), "name a port"),
            (("h:1",), "--link"),
            (("--link", link), "need HOST"),
            (("a", "b", "--link", link), "one HOST"),
            (("h:40", "--link", link), "1-32"),
            (("h", "--link", link, "--format", "7X1"), "format"),
            (("h", "--link", link, "--group", "no-such-group-xyz"), "no such group"),
            (("h", "--link", os.path.join(self.dir, "no", "x")), "does not exist"),
            (("--config", self.cf(), "--link-dir", self.dir), "rm " + blocker),
            (("--config", os.path.join(self.dir, "missing.cf")), "missing.cf"),
        ]
        for args, message in cases:
            with self.assertRaises(usage.UsageError, msg=args) as e:
                _parse(*args)
            self.assertIn(message, str(e.exception), args)

    def test_gnu_order(self) -> None:
        """Options may follow the positional argument; '--' ends the options."""
        options = RealTtyOptions()
        self.assertEqual(gnu_order(options, ["h:1", "--link", "/x", "--ssl", "--", "-y"]),
                         ["--link", "/x", "--ssl", "h:1", "-y"])

    def test_groups(self) -> None:
        """None: dialout if the system has it; '': keep the pty's group; a number is a gid."""
        self.assertEqual(resolve_gid(""), -1)
        self.assertEqual(resolve_gid("0"), 0)
        self.assertIsInstance(resolve_gid(None), int)


class TwistdTests(SynchronousTestCase):
    """twistd nport realtty ... and twistd nport --realtty FILE."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.ini = os.path.join(self.dir, "realtty.ini")
        with open(self.ini, "w") as f:
            f.write(f"[realtty]\nlink_dir = {self.dir}\nalive_timeout = 0\n"
                    "[ttyNP0]\nserver = 127.0.0.1:10950/10966\n")

    def test_subcommand(self) -> None:
        """twistd nport realtty --config FILE builds only the realtty service."""
        options = Options()
        options.parseOptions(["realtty", "--config", self.ini])
        self.assertEqual(options.subCommand, "realtty")
        svc = makeService(options, MemoryReactorClock())
        self.assertIsInstance(svc, RealTtyService)
        assert isinstance(svc, RealTtyService)
        self.assertEqual(svc.config.ports[0].link, os.path.join(self.dir, "ttyNP0"))

    def test_beside_the_server(self) -> None:
        """--realtty FILE adds the realtty service to the server's."""
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        options = Options()
        options.parseOptions(["--ports", os.ttyname(slave), "--realtty", self.ini])
        svc = makeService(options, MemoryReactorClock())
        children = [c for c in svc if isinstance(c, RealTtyService)]  # type: ignore[attr-defined]
        self.assertEqual(len(children), 1)

    def test_bad_realtty_file(self) -> None:
        """A bad --realtty file is a usage error naming it."""
        with open(self.ini, "w") as f:
            f.write("[ttyNP0]\ncolour = red\n")
        options = Options()
        with self.assertRaises(usage.UsageError) as e:
            options.parseOptions(["--ports", "/dev/nodev-x", "--realtty", self.ini])
        self.assertIn("colour", str(e.exception))


class DeployTests(SynchronousTestCase):
    """The shipped systemd unit and the documentation."""

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def test_unit(self) -> None:
        """Type=notify (ready once the links exist), the real /dev, a runtime dir for the socket."""
        import configparser

        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.read(os.path.join(self.root, "deploy", "systemd", "nport-realtty.service"))
        service = unit["Service"]
        self.assertEqual(service["Type"], "notify")
        self.assertIn("nport-realtty", service["ExecStart"])
        self.assertIn("/run/nport-realtty/", service["ExecStart"])
        self.assertEqual(service["RuntimeDirectory"], "nport-realtty")
        self.assertNotIn("PrivateDevices", service)

    def test_documented(self) -> None:
        """docs/realtty.md exists and the README points at it."""
        with open(os.path.join(self.root, "README.md"), encoding="utf-8") as f:
            self.assertIn("docs/realtty.md", f.read())
        with open(os.path.join(self.root, "docs", "realtty.md"), encoding="utf-8") as f:
            text = f.read()
        for option in ("--link", "--config", "while_disconnected", "npreal2d.cf", "mxaddsvr"):
            self.assertIn(option, text)
