"""dcode: a command-line coding assistant built on a local masked-diffusion language model."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_model", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import dcode` (and `dcode --help`) does not pay for importing torch.
    if name == "load_model":
        from dcode.model.loader import load_model

        return load_model
    raise AttributeError(name)
