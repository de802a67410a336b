"""Contract tests: the emulator against recordings of a real Dify API server."""
