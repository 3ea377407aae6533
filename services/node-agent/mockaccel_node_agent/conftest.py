"""Fixtures of the node agent's tests: a simulated node in a short temp dir, a claim source."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mockaccel_common.simulator.engine import SimulatedNode
from mockaccel_node_agent.domain.claims import ClaimAllocation, ClaimRef
from mockaccel_node_agent.errors import ApiUnavailableError, ClaimNotFoundError
from mockaccel_testing.node_agent import AgentDirs, agent_dirs, simulated_node

NODE = "n1"


class StaticClaims:
    """A ClaimSource from a dict (the tests' injected collaborator)."""

    def __init__(self) -> None:
        self.allocations: dict[str, ClaimAllocation] = {}
        self.down = False
        self.calls = 0

    async def get(self, ref: ClaimRef) -> ClaimAllocation:
        self.calls += 1
        if self.down:
            raise ApiUnavailableError("the API server is unreachable (test)")
        try:
            return self.allocations[ref.name]
        except KeyError:
            raise ClaimNotFoundError(f"ResourceClaim {ref.namespace}/{ref.name} not found") from None


@pytest.fixture
def dirs() -> Iterator[AgentDirs]:
    """mock0..mock3 on NUMA 0, mock4..mock7 on NUMA 1, each with 2 VFs available."""
    with agent_dirs() as made:
        for sub in (made.plugin, made.cdi, made.registry):
            sub.mkdir(parents=True)
        simulated_node(made, NODE, pfs=4, numa_nodes=2)
        yield made


@pytest.fixture
def sim(dirs: AgentDirs) -> SimulatedNode:
    return SimulatedNode.open(dirs.sysfs)
