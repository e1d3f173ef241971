# -*- test-case-name: tests.test_lazyimports -*-
"""
Standard-library modules Twisted imports at start-up but a serial device
server never uses, loaded only when something does (docs/performance.md,
"Memory").

C{twisted.python.compat} runs C{from http import cookiejar} for one
deprecated alias, and C{http.cookiejar} pulls in C{urllib.request},
C{http.client}, C{ssl}, C{email} and C{hashlib} with OpenSSL's libcrypto:
about 9 MiB of an idle process's resident memory, a third of it.
L{defer_unused_imports} puts a stand-in for C{http.cookiejar} in
C{sys.modules}; the first access to any of its attributes imports the real
module and the stand-in becomes it, so code that does use cookies (or the
deprecated alias) works as before, only later.  It must run before Twisted
is imported, so only our own entry points call it (C{nport-twisted},
C{python -m nport_twisted}); under C{twistd} and C{twist} Twisted is
imported first and it does nothing.

This module imports nothing but the standard library: it runs before
Twisted.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

__all__ = ["DEFERRED", "LazyModule", "defer_unused_imports", "import_asyncio_without_ssl"]

#: Modules replaced by a stand-in until first used.
DEFERRED = ("http.cookiejar",)


class LazyModule(types.ModuleType):
    """
    A module that imports the real one of its name on first attribute
    access (a missing attribute: C{__name__}, C{__spec__} and the like are
    its own), then takes over the real module's namespace, so references
    to the stand-in held by earlier importers see the real thing.
    """

    _lock = threading.RLock()

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # import machinery probing: not a use
        return getattr(self._load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def _load(self) -> types.ModuleType:
        name = self.__name__
        with LazyModule._lock:
            real = sys.modules.get(name)
            if real is self or real is None:
                sys.modules.pop(name, None)
                try:
                    real = importlib.import_module(name)
                except BaseException:
                    sys.modules[name] = self  # keep the stand-in: the next use retries
                    raise
                # The stand-in shares the real namespace (the real module's objects keep
                # their own globals: this only copies the names once).
                self.__dict__.update(real.__dict__)
                parent, _, child = name.rpartition(".")
                if parent and parent in sys.modules:
                    setattr(sys.modules[parent], child, real)
            return real


def import_asyncio_without_ssl() -> bool:
    """
    Import C{asyncio} with the standard library's C{ssl} hidden, so it comes
    up without SSL support (it is written for that: C{ssl = None} when the
    import fails) and C{ssl} with libssl stays out of memory (about 4.5 MiB
    resident).  Twisted imports C{asyncio} for C{Deferred}'s Future
    helpers; we run on the epoll reactor and never on an asyncio loop, and
    our TLS is pyOpenSSL's (L{nport_twisted._txinternals.enable_tls}), not
    C{ssl}'s.  C{ssl} itself stays importable: only asyncio's SSL transports
    are missing.  True when it did that; False when asyncio or ssl was
    imported already.
    """
    modules = sys.modules
    if "asyncio" in modules or "ssl" in modules:
        return False
    modules["ssl"] = None  # type: ignore[assignment]  # import ssl -> ImportError
    try:
        importlib.import_module("asyncio")
    finally:
        if "ssl" in modules and modules["ssl"] is None:
            del modules["ssl"]
    return True


def defer_unused_imports(names: tuple[str, ...] = DEFERRED) -> list[str]:
    """
    Replace each of C{names} not imported yet by a L{LazyModule}, and import
    asyncio without ssl (L{import_asyncio_without_ssl}); return the names
    replaced (plus "asyncio" when that was done).  Nothing is done once
    Twisted is imported (whatever it imports is in memory already) or for a
    module that cannot be found.
    """
    if "twisted" in sys.modules:
        return []
    done = []
    for name in names:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        stand_in = LazyModule(name)
        stand_in.__spec__ = spec
        stand_in.__file__ = spec.origin
        parent, _, child = name.rpartition(".")
        if parent:
            stand_in.__package__ = parent
            # The parent package (http) is cheap and is what "from http import
            # cookiejar" looks in: bind the stand-in there too.
            setattr(importlib.import_module(parent), child, stand_in)
        sys.modules[name] = stand_in
        done.append(name)
    if import_asyncio_without_ssl():
        done.append("asyncio")
    return done
