"""What kubelet last told us about our registration; read by the liveness check."""

from __future__ import annotations

from dataclasses import dataclass

from mockaccel_common.logging import get_logger
from mockaccel_node_agent.adapters.metrics import Metrics

log = get_logger("mockaccel_node_agent.registration")


@dataclass
class RegistrationState:
    metrics: Metrics
    registered: bool | None = None
    error: str = ""

    def record(self, registered: bool, error: str) -> None:
        self.registered, self.error = registered, error
        self.metrics.registered.set(1 if registered else 0)
        if registered:
            log.info("plugin_registered")
        else:
            log.error("plugin_registration_failed", error=error)

    @property
    def problem(self) -> str | None:
        """Why the plugin is not healthy as far as registration goes, or None."""
        if self.registered is False:
            return f"kubelet rejected the registration: {self.error or 'no reason given'}"
        return None
