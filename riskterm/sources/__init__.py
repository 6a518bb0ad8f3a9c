"""Where broker events come from: the simulator, a file, stdin."""
