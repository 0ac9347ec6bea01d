"""Shapes: a tiny package for dcode's context tests."""
