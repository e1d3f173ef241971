# -*- test-case-name: tests.test_benchmarks_smoke -*-
"""
Smoke test of the benchmark runner (benchmarks/run.py) in its quickest form.

It checks that a run completes, relays every byte unchanged and stops every
process it started; it does not judge the figures (a loaded CI machine makes
them meaningless).  The benchmark itself is ``python benchmarks/run.py``
(docs/performance.md).  The ser2net part runs only where ser2net is
installed; the runner never installs anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.e2e_util import REPO_ROOT, have_ptys

RUNNER = os.path.join(REPO_ROOT, "benchmarks", "run.py")
QUICKEST = ["--quick", "--duration", "0.5", "--tp-seconds", "0.5", "--rtt-count", "100"]


def _ours(pid: int) -> bool:
    """Whether C{pid} is still one of the runner's processes (not a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return any(word in cmd for word in (b"echo_device.py", b"twisted_client.py", b"twistd",
                                        b"nport_twisted", b"ser2net", b"socat",
                                        b"relay_floor.py", b"load_profile.py"))


class RunnerSmokeTests(SynchronousTestCase):
    """benchmarks/run.py --quick, bounded in time."""

    def setUp(self) -> None:
        if not sys.platform.startswith("linux") or not have_ptys():
            raise SkipTest("the benchmark needs Linux ptys and /proc")
        self.dir = tempfile.mkdtemp(prefix="bench-smoke-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def run_runner(self, *args: str, env: dict[str, str] | None = None,
                   ) -> tuple[int, str, dict[str, object]]:
        out = os.path.join(self.dir, "out.json")
        proc = subprocess.run(
            [sys.executable, RUNNER, *args, "--json", out],
            capture_output=True, text=True, timeout=60, cwd=self.dir, env=env, check=False)
        result: dict[str, object] = {}
        if os.path.exists(out):
            with open(out) as f:
                result = json.load(f)
        return proc.returncode, proc.stdout + proc.stderr, result

    def assert_clean(self, result: dict[str, object], names: list[str], realcom: bool) -> None:
        for section in ["raw", *(["realcom"] if realcom else [])]:
            for name in names:
                figures = result[section][name]  # type: ignore[index]
                self.assertEqual(figures["load"]["bytes_lost"], 0, (section, name))
                self.assertEqual(figures["load"]["bytes_corrupt"], 0, (section, name))
                self.assertEqual(figures["tp"]["bytes_lost"], 0, (section, name))
                self.assertEqual(figures["tp"]["bytes_corrupt"], 0, (section, name))
                self.assertEqual(figures["rtt"]["count"], 100, (section, name))
        pids = result["child_pids"]
        self.assertTrue(pids)
        self.assertEqual([p for p in pids if _ours(p)], [])  # type: ignore[union-attr]

    def test_nport(self) -> None:
        """Against nport-twisted (TCP Server and Real COM), two ports: every byte comes back."""
        code, output, result = self.run_runner(*QUICKEST, "--ports", "2", "--only", "nport")
        self.assertEqual(code, 0, output)
        self.assertIn("nport-twisted", output)
        self.assert_clean(result, ["nport"], realcom=True)

    def test_ser2net(self) -> None:
        """Against ser2net (chardelay off and on), one port, when ser2net is installed."""
        if shutil.which("ser2net") is None:
            raise SkipTest("ser2net is not installed (Debian: apt-get install ser2net)")
        code, output, result = self.run_runner(*QUICKEST, "--ports", "1", "--only", "ser2net",
                                               "--no-realcom")
        self.assertEqual(code, 0, output)
        self.assert_clean(result, ["ser2net_off", "ser2net_on"], realcom=False)

    def test_ser2net_missing(self) -> None:
        """Without ser2net the runner says how to install it and exits 2, starting nothing."""
        env = dict(os.environ, PATH=self.dir)
        code, output, result = self.run_runner("--quick", env=env)
        self.assertEqual(code, 2, output)
        self.assertIn("apt-get install ser2net", output)
        self.assertEqual(result, {})


class RelayFloorSmokeTests(SynchronousTestCase):
    """benchmarks/relay_floor.py in its shortest form: it completes and prints every server."""

    def test_short_run(self) -> None:
        if not sys.platform.startswith("linux") or not have_ptys():
            raise SkipTest("the benchmark needs Linux ptys and /proc")
        proc = subprocess.run(
            [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "relay_floor.py"),
             "--count", "50", "--rounds", "1"],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
        names = [row.split("|")[1].strip() for row in rows[1:]]
        self.assertEqual(names[:2], ["nport-twisted", "python floor"])
        for row in rows[1:]:
            median = float(row.split("|")[2].split()[0])
            self.assertGreater(median, 0.0)


class WritePathSmokeTests(SynchronousTestCase):
    """benchmarks/write_path.py in its shortest form: both figures, positive."""

    def test_short_run(self) -> None:
        if not sys.platform.startswith("linux"):
            raise SkipTest("the measurement needs epoll")
        proc = subprocess.run(
            [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "write_path.py"),
             "--events", "100", "--repeats", "1"],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertEqual([line.split(":")[0] for line in lines],
                         ["Twisted write path", "bare os.write"])
        for line in lines:
            self.assertGreater(float(line.split(":")[1].split()[0]), 0.0)


class LoadProfileSmokeTests(SynchronousTestCase):
    """benchmarks/load_profile.py in its shortest form: nport-twisted's line, nothing lost."""

    def test_short_run(self) -> None:
        if not sys.platform.startswith("linux") or not have_ptys():
            raise SkipTest("the benchmark needs Linux ptys and /proc")
        proc = subprocess.run(
            [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "load_profile.py"),
             "--only", "nport", "--ports", "2", "--seconds", "1"],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        (line,) = [line for line in proc.stdout.splitlines() if line.startswith("nport: ")]
        self.assertIn("2 ports, CPU ", line)
        self.assertIn("lost 0, altered 0", line)
        # The pty side: about one read(2) and one write(2) per chunk (no drop, no hold-back).
        reads = float(line.split("read(2) ")[1].split()[0])
        self.assertGreater(reads, 0.3)
