"""A local ProjectX Gateway for tests: REST plus both SignalR hubs, on 127.0.0.1 only."""

from riskterm.testing.gateway.server import TestGateway
from riskterm.testing.gateway.state import CONTRACTS, Faults, GatewayState

__all__ = ["CONTRACTS", "Faults", "GatewayState", "TestGateway"]
