"""Which capabilities the engine runs, built from the configuration.

Order matters: `on_tick` runs in this order, so producers of risk inputs (syscalls, connections)
come before the risk scorer that folds them into one score per process.
"""

from __future__ import annotations

from fluxtui.capabilities.anomaly import AnomalyComponent
from fluxtui.capabilities.connection_tracker import ConnectionsComponent
from fluxtui.capabilities.guard import GuardComponent
from fluxtui.capabilities.persistence import PersistenceWatch
from fluxtui.capabilities.process_details import ProcessDetails
from fluxtui.capabilities.syscall_risk import RiskScorer, SyscallCapture
from fluxtui.component import Component
from fluxtui.config import Config


def build_components(config: Config, privileged: bool, interactive: bool) -> list[Component]:
    """`privileged`: running as root; `interactive`: a person answers prompts (the TUI)."""
    capture = SyscallCapture(config)
    components: list[Component] = [capture]
    components.append(GuardComponent(config.guard, interactive=interactive))
    if config.network.enabled:
        components.append(ConnectionsComponent(config.network, rules=config.rules))
    components.append(PersistenceWatch(config))  # after the capture (its counts), before risk
    components.append(AnomalyComponent(config))  # after the capture, before the risk scorer
    # last: folds every producer's risk inputs; one container cache with the capture
    components.append(RiskScorer(config, containers=capture.containers))
    components.append(ProcessDetails(components))  # the detail screens' processes (the UI's)
    return components
