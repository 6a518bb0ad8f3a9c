"""Live brokers: sources of section-1 events that also carry out enforcement."""
