"""Fidelity tests of the bundled Dify emulator (dify_provider.testing)."""
