"""riskterm: a terminal risk manager for active futures and equity traders."""

__version__ = "0.1.0"
