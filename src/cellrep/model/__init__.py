"""The transformer cell encoder as a scvi-tools model (imports torch and scvi-tools)."""

from ._model import CellEncoder

__all__ = ["CellEncoder"]
