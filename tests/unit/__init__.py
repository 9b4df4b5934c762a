"""Unit tests of `core` and of the documentation: fast, no server, no training."""
