"""Tools: linear, parameter-free representations, scTOP projection and label transfer."""

from ._encode import encode, gene_attention
from ._linear import linear_embedding, project
from ._orthologs import map_orthologs
from ._pca import pca
from ._sctop import sctop_basis, sctop_score
from ._transfer import transfer_labels

__all__ = [
    "encode",
    "gene_attention",
    "linear_embedding",
    "map_orthologs",
    "pca",
    "project",
    "sctop_basis",
    "sctop_score",
    "transfer_labels",
]
