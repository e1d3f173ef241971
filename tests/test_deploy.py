# -*- test-case-name: tests.test_deploy -*-
"""
The shipped systemd unit (deploy/systemd/): it must raise the descriptor
limit (issue 10 item 2) and reload on SIGHUP.
"""

from __future__ import annotations

import configparser
import os

from twisted.trial.unittest import SkipTest, SynchronousTestCase

UNIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "deploy", "systemd", "nport-twisted.service")


class SystemdUnitTests(SynchronousTestCase):
    def service(self) -> configparser.SectionProxy:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        with open(UNIT) as f:
            parser.read_file(f)
        return parser["Service"]

    def test_limit_nofile(self) -> None:
        """LimitNOFILE is set well above the 1,024 that idle web clients once used up."""
        self.assertGreaterEqual(int(self.service()["LimitNOFILE"].split(":")[0]), 4096)

    def test_reload_is_sighup(self) -> None:
        """systemctl reload sends SIGHUP, which re-reads the settings file."""
        self.assertIn("-HUP", self.service()["ExecReload"])

    def test_operability_keys(self) -> None:
        """User=, StateDirectory=, the bind capability and restart on failure (issue 13)."""
        service = self.service()
        self.assertEqual(service["User"], "nport")
        self.assertEqual(service["StateDirectory"], "nport-twisted")
        self.assertEqual(service["AmbientCapabilities"], "CAP_NET_BIND_SERVICE")
        self.assertEqual(service["Restart"], "on-failure")
        self.assertEqual(service["RestartPreventExitStatus"], "64")  # usage errors: no loop

    def test_exec_start_options_parse(self) -> None:
        """The shipped ExecStart is a valid command line of ours (Environment= expanded)."""
        import shlex

        from nport_twisted.tap import Options
        service = self.service()
        env = dict(item.split("=", 1) for item in shlex.split(service["Environment"]))
        argv = shlex.split(service["ExecStart"].replace("${NPORT_PORTS}", env["NPORT_PORTS"]))
        self.assertTrue(argv[0].endswith("/nport-twisted"))
        state = os.path.join(os.path.abspath(self.mktemp()), "nport.ini")
        argv = [state if a == "/var/lib/nport-twisted/nport.ini" else a for a in argv[1:]]
        options = Options()
        options.parseOptions(argv)
        self.assertEqual(options["devices"], [env["NPORT_PORTS"]])

    def test_systemd_analyze_verify(self) -> None:
        """systemd-analyze verify accepts the unit (ExecStart pointed at this checkout's script)."""
        import shutil
        import subprocess
        import sys

        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed")
        script = os.path.join(os.path.dirname(sys.executable), "nport-twisted")
        if not os.access(script, os.X_OK):
            raise SkipTest(f"{script} is not installed (pip install -e .)")
        with open(UNIT) as f:
            text = f.read()
        self.assertIn("/opt/nport/bin/nport-twisted", text)
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        unit = os.path.join(directory, "nport-twisted.service")
        with open(unit, "w") as f:
            f.write(text.replace("/opt/nport/bin/nport-twisted", script))
        result = subprocess.run([analyze, "verify", unit], capture_output=True, text=True,
                                timeout=120)
        self.assertEqual((result.returncode, result.stderr.strip()), (0, ""), result.stdout)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Ports the image must declare and the README must publish (issue 13).
_REQUIRED = ["80/tcp", "4800/udp", "950/tcp", "966/tcp", "4001/tcp", "4900/tcp"]


class ContainerFilesTests(SynchronousTestCase):
    """What the container recipes promise (the image itself is built by hand: docs/deployment.md)."""

    def read(self, *path: str) -> str:
        with open(os.path.join(ROOT, *path)) as f:
            return f.read()

    def _exposed(self) -> set[str]:
        ports: set[str] = set()
        for line in self.read("Dockerfile").splitlines():
            if line.startswith("EXPOSE "):
                for item in line.split()[1:]:
                    spec, _, proto = item.partition("/")
                    low, _, high = spec.partition("-")
                    for n in range(int(low), int(high or low) + 1):
                        ports.add(f"{n}/{proto or 'tcp'}")
        return ports

    def test_no_setcap(self) -> None:
        """No file capabilities: they break --cap-drop ALL and Kubernetes drop: [ALL]."""
        dockerfile = self.read("Dockerfile")
        self.assertNotIn("setcap", [w for line in dockerfile.splitlines()
                                    if not line.lstrip().startswith("#") for w in line.split()])

    def test_base_overridable(self) -> None:
        """The base image is a build argument (so it builds without a registry)."""
        self.assertIn("ARG BASE=", self.read("Dockerfile"))
        self.assertIn("FROM ${BASE}", self.read("Dockerfile"))

    def test_expose_every_port(self) -> None:
        """EXPOSE covers web, DSCI, TCP 4900 and every mode's ports of all 32 serial ports."""
        exposed = self._exposed()
        for port in _REQUIRED + ["23/tcp", "1013/tcp", "4032/tcp", "4001/udp", "4032/udp"]:
            self.assertIn(port, exposed)

    def test_readme_publishes_them(self) -> None:
        """The README's bridge-network docker run publishes 80, 4800/udp, 4900 and port 1's ports."""
        readme = self.read("README.md")
        for port in _REQUIRED:
            number, proto = port.split("/")
            wanted = f"-p {number}:{number}" + ("/udp" if proto == "udp" else "")
            self.assertIn(wanted, readme, port)
