"""ProjectX Gateway (TopstepX and the other firms on ProjectX): REST, SignalR hubs, mapping."""
