# -*- test-case-name: tests.test_runner -*-
"""
``python -m nport_twisted [options]`` and the ``nport-twisted`` console
script: run the service in the foreground, as ``twist nport [options]``
does, with the plugin's options only (``--help`` lists them) and logs on
stdout (text unless ``--log-format json``).

Twist is the runner (reactor, signals, log observer); this only names us
in messages and finds the plugin even when twistd's plugin cache is not
writable.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Run the service; C{argv} without the program name (default: sys.argv[1:])."""
    from twisted.application.twist._twist import Twist  # the twist script's own entry point

    from nport_twisted.tap import Options

    args = list(sys.argv[1:] if argv is None else argv)
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    Options.prog = "nport-twisted" if name == "nport-twisted" else "python -m nport_twisted"
    Twist.main(["twist", "nport", *args])


if __name__ == "__main__":
    main()
