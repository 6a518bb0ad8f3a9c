"""A local ProjectX Gateway for tests: REST plus both SignalR hubs, on 127.0.0.1 only."""

from tests.gateway.server import TestGateway
from tests.gateway.state import CONTRACTS, Faults, GatewayState

__all__ = ["CONTRACTS", "Faults", "GatewayState", "TestGateway"]
