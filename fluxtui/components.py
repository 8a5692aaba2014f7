"""Which capabilities the engine runs, built from the configuration.

Order matters: `on_tick` runs in this order, so producers of risk inputs (syscalls, connections)
come before the risk scorer that folds them into one score per process.
"""

from __future__ import annotations

from fluxtui.config import Config
from fluxtui.engine import Component


def build_components(config: Config, privileged: bool) -> list[Component]:
    components: list[Component] = []
    return components
