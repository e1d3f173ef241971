# -*- test-case-name: tests.test_settings -*-
"""
The NPort models nport-twisted can present, with their discovery identifiers.

Only AP ID / hardware ID pairs that MOXA published (Auto IP Report appendix
of the manuals) or that were seen on the wire are listed (dsci.md §8); an ID
is never derived from a model name.  The 32-port NPort 6610-32 and 6650-32
(MOXA's largest) are listed without IDs: no pair is known for them, so a box
presenting one has no discovery face (DSCI, Auto IP Report) and is reached
by its address; Real COM ports 17-32 use data ports 982+ and command ports
998+ (realcom.md §2).
"""

from __future__ import annotations

import re

import attrs


@attrs.frozen
class Model:
    """One NPort model: its name, discovery identifiers and serial port count."""

    name: str
    ap_id: int | None  # None: no published or observed ID (no discovery answers)
    hw_id: int | None
    port_count: int
    source: str

    @property
    def discoverable(self) -> bool:
        """Whether discovery IDs are known, so DSCI and Auto IP Report can present it."""
        return self.ap_id is not None and self.hw_id is not None

    @property
    def ids(self) -> tuple[int, int]:
        """(AP ID, HW ID); ValueError for a model without known IDs (never invented)."""
        if self.ap_id is None or self.hw_id is None:
            raise ValueError(f"{self.name} has no known discovery IDs")
        return self.ap_id, self.hw_id

    @property
    def short_name(self) -> str:
        """The name without the "NPort " prefix, as used in ``NP5232_1234``."""
        return self.name.removeprefix("NPort ").replace(" ", "")


_MODELS = (
    Model("NPort 5110", 0x80005110, 0x5110, 1, "manual; wire"),
    Model("NPort 5110A", 0x80015100, 0x511A, 1, "wire"),
    Model("NPort 5210", 0x80000312, 0x0322, 2, "manual"),
    Model("NPort 5230", 0x80000312, 0x0312, 2, "manual"),
    Model("NPort 5232", 0x80000312, 0x0332, 2, "manual; wire"),
    Model("NPort 5232I", 0x80000312, 0x1332, 2, "manual"),
    Model("NPort 5410", 0x80005000, 0x0504, 4, "manual"),
    Model("NPort 5430", 0x80005000, 0x0534, 4, "manual"),
    Model("NPort 5430I", 0x80005000, 0x1534, 4, "manual"),
    Model("NPort 5450", 0x80005400, 0x5404, 4, "wire"),
    Model("NPort 5610-8", 0x80005610, 0x5618, 8, "manual"),
    Model("NPort 5610-16", 0x80005610, 0x5613, 16, "manual"),
    Model("NPort 5630-8", 0x80005610, 0x5638, 8, "manual"),
    Model("NPort 5630-16", 0x80005610, 0x5633, 16, "manual"),
    Model("NPort 5650-8", 0x80005610, 0x5658, 8, "manual"),
    Model("NPort 5650-16", 0x80005610, 0x5653, 16, "manual"),
    Model("NPort 5610-8-DT", 0x80015610, 0x5700, 8, "manual"),
    Model("NPort 5650-8-DT", 0x80015610, 0x5702, 8, "manual"),
    Model("NPort 5650I-8-DT", 0x80015610, 0x5703, 8, "manual"),
    Model("NPort 5610-8-DTL", 0x80025610, 0x5710, 8, "manual"),
    Model("NPort 5650-8-DTL", 0x80025610, 0x5711, 8, "manual"),
    Model("NPort 5650I-8-DTL", 0x80025610, 0x5712, 8, "manual"),
    Model("NPort 6250", 0x80006000, 0x6250, 2, "wire"),
    Model("NPort W2250A", 0x80002450, 0x2452, 2, "wire"),
    Model("NPort 6610-32", None, None, 32, "manual (port count); no discovery IDs known"),
    Model("NPort 6650-32", None, None, 32, "manual (port count); no discovery IDs known"),
)

MODELS: dict[str, Model] = {m.name: m for m in _MODELS}

#: Largest port count of any listed model; more ports need another model.
MAX_PORTS = max(m.port_count for m in _MODELS)


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z-]", "", name.lower().removeprefix("nport").strip())


_BY_KEY = {_key(m.name): m for m in _MODELS}


def find_model(name: str) -> Model:
    """
    Look a model up by a loose name: ``NPort 5232``, ``5232``, ``nport5650-8``.

    @raise KeyError: with the list of known models when nothing matches.
    """
    try:
        return _BY_KEY[_key(name)]
    except KeyError:
        known = ", ".join(m.name for m in _MODELS)
        raise KeyError(f"unknown model {name!r}; known models: {known}") from None


def default_model(port_count: int) -> Model:
    """
    The model presented when none is configured, picked by the port count.

    @raise ValueError: for more ports than any listed model has.
    """
    if port_count < 1:
        raise ValueError("at least one serial port is needed")
    for limit, name in ((1, "NPort 5110"), (2, "NPort 5232"), (4, "NPort 5450"),
                        (8, "NPort 5650-8"), (16, "NPort 5650-16"), (32, "NPort 6650-32")):
        if port_count <= limit:
            return MODELS[name]
    raise ValueError(
        f"{port_count} serial ports: no NPort model has more than {MAX_PORTS}; serve more "
        f"as several NPort identities (--box), each with at most {MAX_PORTS} ports"
    )
