"""Plotting: matplotlib figures of what :mod:`cellrep.tl`, :mod:`cellrep.model` and :mod:`cellrep.benchmark` write.

Every function takes ``ax=``, ``show=`` and ``save=`` and returns the Axes or Figure it drew.
"""

from ._attention import gene_attention
from ._benchmark import benchmark
from ._confusion import confusion
from ._embedding import embedding
from ._history import training_history
from ._sctop import sctop_scores

__all__ = ["benchmark", "confusion", "embedding", "gene_attention", "sctop_scores", "training_history"]
