"""dcode: a command-line coding assistant built on a local masked-diffusion language model."""

from __future__ import annotations

__version__ = "0.1.0"
