"""Engines that run a model's graphs; the torch engine is the reference."""
