# -*- test-case-name: tests.test_deploy -*-
"""
The shipped systemd unit (deploy/systemd/): it must raise the descriptor
limit (issue 10 item 2) and reload on SIGHUP.
"""

from __future__ import annotations

import configparser
import os

from twisted.trial.unittest import SynchronousTestCase

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
