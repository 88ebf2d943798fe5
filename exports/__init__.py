"""Exports: a mixture manifest's phase written in the native formats of other training stacks."""
