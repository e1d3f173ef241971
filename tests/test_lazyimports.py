"""
What an idle process keeps out of memory (issue 14, docs/performance.md "Memory"):
nport_twisted._lazyimports, and the optional faces imported only when configured.
Each check runs in a fresh interpreter: under trial everything is imported already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from nport_twisted import _lazyimports

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fresh(code: str) -> dict[str, object]:
    """Run C{code} in a fresh interpreter; the JSON object on its last output line."""
    env = dict(os.environ, PYTHONPATH=_ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60, cwd=_ROOT, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise AssertionError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


#: Modules a TCP Server box with consoles, SNMP, mail and TLS off must not import.
_HEAVY = ["ssl", "_ssl", "_hashlib", "hashlib", "email", "urllib.request", "http.client",
          "unittest", "pdb", "zoneinfo", "OpenSSL", "cryptography", "pysnmp", "twisted.web",
          "twisted.mail.smtp", "prometheus_client", "nport_twisted.tools.realtty.options",
          "twisted.application.app"]


class DeferredImportTests(SynchronousTestCase):
    def test_cookiejar_stand_in(self) -> None:
        """Twisted's compat gets the stand-in; the first use imports the real module."""
        result = _fresh(
            "import json, sys\n"
            "from nport_twisted._lazyimports import defer_unused_imports\n"
            "done = defer_unused_imports()\n"
            "import twisted.python.compat as compat\n"
            "before = [m for m in ('urllib.request', 'http.client', 'email') if m in sys.modules]\n"
            "import http.cookiejar\n"
            "jar = http.cookiejar.CookieJar()\n"
            "print(json.dumps({'done': done, 'before': before,\n"
            "    'after': 'urllib.request' in sys.modules,\n"
            "    'same': compat.cookielib.CookieJar is http.cookiejar.CookieJar,\n"
            "    'real': type(sys.modules['http.cookiejar']).__name__}))\n")
        self.assertEqual(result, {"done": ["http.cookiejar", "asyncio"], "before": [],
                                  "after": True, "same": True, "real": "module"})

    def test_asyncio_without_ssl_and_ssl_still_importable(self) -> None:
        """asyncio comes up without ssl; ssl itself can still be imported afterwards."""
        result = _fresh(
            "import json, sys\n"
            "from nport_twisted._lazyimports import defer_unused_imports\n"
            "defer_unused_imports()\n"
            "import twisted.internet.defer\n"
            "before = 'ssl' in sys.modules\n"
            "import asyncio.base_events as be\n"
            "import ssl\n"
            "print(json.dumps({'before': before, 'asyncio_ssl': be.ssl is None,\n"
            "                  'ssl': hasattr(ssl, 'SSLContext')}))\n")
        self.assertEqual(result, {"before": False, "asyncio_ssl": True, "ssl": True})

    def test_nothing_once_twisted_is_imported(self) -> None:
        """Here (under trial) Twisted is in memory: nothing is replaced."""
        self.assertEqual(_lazyimports.defer_unused_imports(), [])
        self.assertFalse(_lazyimports.import_asyncio_without_ssl())

    def test_failed_load_keeps_stand_in(self) -> None:
        """A stand-in for a module that fails to import raises, and stays for a retry."""
        stand_in = _lazyimports.LazyModule("nport_twisted_no_such_module")
        sys.modules["nport_twisted_no_such_module"] = stand_in
        self.addCleanup(sys.modules.pop, "nport_twisted_no_such_module", None)
        self.assertRaises(ImportError, getattr, stand_in, "anything")
        self.assertIs(sys.modules["nport_twisted_no_such_module"], stand_in)
        self.assertRaises(AttributeError, getattr, stand_in, "__wrapped__")  # not a use


class IdleProcessImportTests(SynchronousTestCase):
    def test_idle_box_imports_no_optional_face(self) -> None:
        """
        The entry point's set-up and a TCP Server box with consoles off import
        none of the optional faces nor the standard-library parts Twisted
        would load for nothing (TLS, mail, SNMP, web, trial, pdb, ...).
        """
        result = _fresh(
            "import json, sys\n"
            "from nport_twisted._lazyimports import defer_unused_imports\n"
            "defer_unused_imports()\n"
            "from nport_twisted.tap import Options, makeService\n"
            "o = Options(); o.parseOptions(['--ports', '/nonexistent/ttyX', '--mode',\n"
            "    'tcp-server', '--http-port', '0', '--telnet-port', '0'])\n"
            "from twisted.application.runner._runner import Runner\n"
            "from twisted.application.service import Application, IService\n"
            "svc = makeService(o)\n"
            f"print(json.dumps(sorted(m for m in {_HEAVY!r} if m in sys.modules)))\n")
        self.assertEqual(result, [])

    def test_python_m_skips_the_plugin_scan(self) -> None:
        """python -m nport_twisted --help: our runner, no plugin scan for options."""
        env = dict(os.environ, PYTHONPATH=_ROOT)
        out = subprocess.run([sys.executable, "-X", "importtime", "-m", "nport_twisted",
                              "--help"], capture_output=True, text=True, env=env, timeout=60,
                             cwd=_ROOT, stdin=subprocess.DEVNULL)
        self.assertEqual(out.returncode, 0, out.stderr)
        imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()
                    if line.startswith("import time:")}
        self.assertIn("nport_twisted.tap", imported)
        self.assertNotIn("twisted.application.twist._options", imported)
        self.assertNotIn("twisted.trial.itrial", imported)
