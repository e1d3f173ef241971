#!/usr/bin/env python3
"""
The long part of the reliability suite (issue 6 part 2; docs/reliability.md).

Runs, each in its own child process so that every scenario reports its own
peak RSS:

* ``fuzz-<codec>``: the properties and state machines of tests/test_fuzz.py
  for one codec (aspp, dsci, packing, rfc2217, settings, server), ``--cases`` cases
  in total per codec (split evenly between its properties; a state machine
  case is one run of up to 30 steps), random seeds (``--seed`` to repeat);
* ``fault-<scenario>``: the scenarios of tests/test_faults.py at full size
  against the real service (``twistd -n nport`` on loopback, real ptys):
  ``--cycles`` connect/disconnect cycles, floods of hundreds of MB, the
  half-open experiment in network namespaces (root);
* ``hostile-<scenario>``: the hostile clients of tests/test_hostile.py
  (issue 10: replies never read on every face (RFC 2217, ASPP, web, telnet
  console, SNMP), log and capture floods, idle and slow web
  clients, huge bodies, concurrent guesses, pairing, reconnects at the
  limit, resets while the device stalls, a 50 MB settings file, UDP and
  TCP Client faults) at full size;
* ``fuzz-web``, ``fuzz-udp``, ``fuzz-tcpclient``: the properties of
  tests/test_fuzz_faces.py.

``--duration S`` gives every scenario about S seconds instead of its fixed
size: fuzzers run batches until the time is up (``--cases`` then only caps
them), floods last S seconds, and counted scenarios repeat until S seconds
have passed (their figures are the worst of the repeats).

Usage (from the repository root, with the project's interpreter)::

    python stress/run.py                        # everything at full size: about 1-2 h
    python stress/run.py --duration 60          # everything, about a minute each
    python stress/run.py --only fuzz --cases 1000
    python stress/run.py --only fault-cycles --cycles 2000
    python stress/run.py --only hostile --duration 30
    python stress/run.py --list

Each scenario prints one line with its figures (cases or cycles, bytes,
peak RSS, duration); ``--json FILE`` writes them all.  The exit status is 1
if any scenario failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

FUZZ_CODECS = ("aspp", "dsci", "packing", "rfc2217", "settings", "server", "web", "udp", "tcpclient")
FAULTS = ("device-vanish", "client-reset", "jammed-ignored", "jammed-paused", "keepalive-settings",
          "half-open", "cycles", "corrupt-settings", "disk-full")
HOSTILE = ("reply-flood-rfc2217", "reply-flood-aspp", "reply-flood-web", "reply-flood-telnet", "snmp-flood",
           "malformed-flood", "capture-flood", "web-idle-fds",
           "web-slow", "web-big-body", "login-flood", "intruder-command", "reconnect-at-limit",
           "paused-reset", "sighup-big-file", "udp-flood", "tcp-client-faults")
SCENARIOS = ([f"fuzz-{c}" for c in FUZZ_CODECS] + [f"fault-{f}" for f in FAULTS]
             + [f"hostile-{h}" for h in HOSTILE])
RESULT = "STRESS-RESULT "


# --- in the child -------------------------------------------------------------------------------


#: Rules per state machine run (a "case" of a state machine is one run).
STEPS = 30


def _batches(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def _property_runner(prop: Any, count: list[int]) -> Any:
    from hypothesis import given

    @given(prop.strategy)
    def check(drawn: tuple[Any, ...]) -> None:
        count[0] += 1
        prop.check(*drawn)

    return check


def _fuzz(codec: str, cases: int, seed: int | None, duration: float | None = None) -> dict[str, Any]:
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.stateful import run_state_machine_as_test

    from tests import test_fuzz, test_fuzz_faces

    if duration is not None:
        return _fuzz_for(codec, cases, seed, duration)
    props = [p for p in test_fuzz.PROPERTIES + test_fuzz_faces.PROPERTIES if p.codec == codec]
    machines = [(name, cls) for c, name, cls in test_fuzz.MACHINES if c == codec]
    items = len(props) + len(machines)
    if not items:
        raise SystemExit(f"no properties for codec {codec!r}")
    shares = [cases // items + (1 if i < cases % items else 0) for i in range(items)]
    base_seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
    per: dict[str, int] = {}
    common: dict[str, Any] = {"database": None, "derandomize": False, "deadline": None, "print_blob": True,
                              "suppress_health_check": list(HealthCheck),
                              "phases": [Phase.generate, Phase.shrink]}

    # Batches keep hypothesis's memory of tried inputs (it grows with every example) bounded.
    for n, (prop, share) in enumerate(zip(props, shares)):
        count = [0]
        for batch, size in enumerate(_batches(share, 5000)):
            test = _property_runner(prop, count)
            hypothesis_seed(base_seed + 1000 * n + batch)(settings(max_examples=size, **common)(test))()
        per[prop.name] = count[0]

    for n, ((name, cls), share) in enumerate(zip(machines, shares[len(props):])):
        class Counted(cls):  # type: ignore[misc, valid-type]
            runs = 0

            def __init__(self) -> None:
                super().__init__()
                type(self).runs += 1

        Counted.__name__ = name
        for batch, size in enumerate(_batches(share, 1000)):
            hypothesis_seed(base_seed + 100_000 + 1000 * n + batch)(Counted)  # read from the class
            run_state_machine_as_test(Counted, settings=settings(max_examples=size, stateful_step_count=STEPS,
                                                                 **common))
        per[name] = Counted.runs

    return {"cases": sum(per.values()), "per_property": per, "seed": base_seed}


def _fuzz_for(codec: str, cases: int, seed: int | None, duration: float) -> dict[str, Any]:
    """Round-robin batches over the codec's properties and machines until C{duration} is up."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.stateful import run_state_machine_as_test

    from tests import test_fuzz, test_fuzz_faces

    props = [p for p in test_fuzz.PROPERTIES + test_fuzz_faces.PROPERTIES if p.codec == codec]
    machines = [(name, cls) for c, name, cls in test_fuzz.MACHINES if c == codec]
    if not props and not machines:
        raise SystemExit(f"no properties for codec {codec!r}")
    base_seed = seed if seed is not None else int.from_bytes(os.urandom(4), "big")
    common: dict[str, Any] = {"database": None, "derandomize": False, "deadline": None, "print_blob": True,
                              "suppress_health_check": list(HealthCheck),
                              "phases": [Phase.generate, Phase.shrink]}
    per: dict[str, int] = {}
    deadline = time.monotonic() + duration
    batch = 0
    while time.monotonic() < deadline and sum(per.values()) < cases:
        for n, prop in enumerate(props):
            count = [0]
            test = _property_runner(prop, count)
            hypothesis_seed(base_seed + 1000 * n + batch)(settings(max_examples=100, **common)(test))()
            per[prop.name] = per.get(prop.name, 0) + count[0]
            if time.monotonic() >= deadline:
                break
        for n, (name, cls) in enumerate(machines):
            if time.monotonic() >= deadline:
                break

            class Counted(cls):  # type: ignore[misc, valid-type]
                runs = 0

                def __init__(self) -> None:
                    super().__init__()
                    type(self).runs += 1

            Counted.__name__ = name
            hypothesis_seed(base_seed + 100_000 + 1000 * n + batch)(Counted)
            run_state_machine_as_test(Counted, settings=settings(max_examples=50, stateful_step_count=STEPS,
                                                                 **common))
            per[name] = per.get(name, 0) + Counted.runs
        batch += 1
    return {"cases": sum(per.values()), "per_property": per, "seed": base_seed, "batches": batch}


def _fault(name: str, cycles: int) -> dict[str, Any]:
    from tests import test_faults

    function, _fast, full = test_faults.SCENARIOS[name]
    kwargs = dict(full)
    if name == "cycles":
        kwargs["cycles"] = cycles
    return function(**kwargs)


def _hostile(name: str, duration: float | None) -> dict[str, Any]:
    from tests import test_hostile

    function, _fast, full = test_hostile.SCENARIOS[name]
    kwargs = dict(full)
    if duration is not None and name in test_hostile.TIMED:
        kwargs["seconds"] = duration
        return function(**kwargs)
    return function(**kwargs)


def _worst(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of repeated runs: the last run's, peaks and growths at their worst, plus the count."""
    out = dict(runs[-1])
    for key in out:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if values and any(word in key for word in ("peak", "growth", "max", "_s", "log_bytes", "refused")):
            out[key] = max(values)
    out["repeats"] = len(runs)
    return out


def _repeated(run: Any, duration: float | None) -> dict[str, Any]:
    """C{run()} once, or again and again until C{duration} seconds have passed."""
    if duration is None:
        return dict(run())
    runs = []
    deadline = time.monotonic() + duration
    while not runs or time.monotonic() < deadline:
        runs.append(run())
    return _worst(runs)


def child(name: str, cases: int, cycles: int, seed: int | None, duration: float | None = None) -> int:
    started = time.monotonic()
    try:
        if name.startswith("fuzz-"):
            figures = _fuzz(name[5:], cases, seed, duration)
        elif name.startswith("hostile-"):
            from tests import test_hostile
            if name[8:] in test_hostile.TIMED:
                figures = _hostile(name[8:], duration)
            else:
                figures = _repeated(lambda: _hostile(name[8:], None), duration)
        else:
            figures = _repeated(lambda: _fault(name[6:], cycles), duration)
        status = "ok"
    except BaseException as e:  # noqa: BLE001 - report whatever it is (SkipTest, AssertionError, a bug)
        skipped = type(e).__name__ == "SkipTest"
        figures = {"error": f"{type(e).__name__}: {e}"[:4000]}
        if not skipped:
            figures["traceback"] = traceback.format_exc()[-6000:]
        status = "skipped" if skipped else "FAILED"
    figures.setdefault("duration_s", round(time.monotonic() - started, 1))
    figures["runner_peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(RESULT + json.dumps({"name": name, "status": status, "figures": figures}), flush=True)
    return 0 if status != "FAILED" else 1


# --- in the parent ------------------------------------------------------------------------------


_SHOWN = ("cases", "cycles", "rounds", "bytes", "peak_rss_kb", "runner_peak_rss_kb", "duration_s")


def summary(result: dict[str, Any]) -> str:
    figures = result["figures"]
    head = [f"{k}={figures[k]}" for k in _SHOWN if k in figures]
    rest = [f"{k}={v}" for k, v in figures.items() if k not in _SHOWN and k != "traceback"]
    return f"{result['name']:<26} {result['status']:<7} " + " ".join(head + rest)


def machine_description() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    import hypothesis

    import twisted

    return {"python": platform.python_version(), "twisted": twisted.__version__,
            "hypothesis": hypothesis.__version__, "kernel": platform.release(), "cpu": cpu,
            "cpus": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "load_avg_at_start": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000, help="fuzz cases per codec (default 100000)")
    parser.add_argument("--cycles", type=int, default=10_000,
                        help="connect/disconnect cycles (default 10000)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only scenarios whose name starts with NAME (repeatable): "
                             "fuzz, fault, fuzz-aspp, fault-cycles …")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random, printed)")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="give every scenario about this many seconds instead of its fixed size "
                             "(fuzzers run until then, floods last that long, counted scenarios repeat)")
    parser.add_argument("--json", metavar="FILE", help="write the machine and every result as JSON")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        return child(args.child, args.cases, args.cycles, args.seed, args.duration)
    selected = [s for s in SCENARIOS if not args.only or any(s.startswith(o) for o in args.only)]
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    if not selected:
        parser.error(f"--only {args.only} matches nothing; see --list")

    machine = machine_description()
    command = " ".join([os.path.relpath(sys.executable, REPO) if sys.executable.startswith(REPO)
                        else sys.executable, "stress/run.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"# {command}\n# {json.dumps(machine)}", flush=True)
    results = []
    started = time.monotonic()
    for name in selected:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--cases", str(args.cases),
               "--cycles", str(args.cycles)]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed)]
        if args.duration is not None:
            cmd += ["--duration", str(args.duration)]
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
        if lines:
            result = json.loads(lines[-1][len(RESULT):])
        else:
            result = {"name": name, "status": "FAILED",
                      "figures": {"error": f"exit {proc.returncode}", "output": proc.stdout[-4000:]}}
        results.append(result)
        print(summary(result), flush=True)
        if result["status"] == "FAILED":
            print(result["figures"].get("traceback") or result["figures"].get("output", ""), flush=True)
    total = round(time.monotonic() - started, 1)
    failed = [r["name"] for r in results if r["status"] == "FAILED"]
    print(f"# {len(results)} scenarios in {total} s; failed: {', '.join(failed) or 'none'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": command, "machine": machine, "total_s": total, "results": results}, f,
                      indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
