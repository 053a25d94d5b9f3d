"""User API: :class:`CellEncoder`, a scvi-tools model wrapping the transformer cell encoder."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.model.base._save_load import _load_saved_files

from .._validation import check_counts, get_matrix
from ._module import CellEncoderModule
from ._tokenize import SCHEMES
from ._trainingplan import CellEncoderTrainingPlan
from ._vocabulary import (
    align_to_vocabulary,
    balanced_class_weights,
    check_unique_genes,
    gene_embedding_rows,
    mean_nonzero_log_expression,
)

logger = logging.getLogger(__name__)
DEFAULT_BINS = {"equal_bins": 10, "adaptive_bins": 51}


class CellEncoder(UnsupervisedTrainingMixin, BaseModelClass):
    """Transformer cell encoder pretrained with MLM and divide-and-conquer contrastive learning.

    Each cell becomes a sequence of its non-zero genes (at most ``max_seq_len``, the most
    expressed first) after a CLS token; a gene token is the sum of a learned gene-identity
    embedding and a value embedding chosen by ``tokenization``. Pre-LayerNorm transformer
    blocks encode it; the CLS state (or the mean of the gene states) is the cell embedding.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`; its genes are the model vocabulary.
    n_layers, d_model, n_heads, dropout
        Transformer size, and dropout on the token embeddings and both residual branches of
        every block (not on attention probabilities, whose CPU path is ~10x slower).
    max_seq_len
        Maximum number of gene tokens per cell (the CLS token comes on top).
    tokenization
        ``'equal_bins'`` (scBERT/CellLM: floor of log1p(CP10k), capped at ``n_bins - 1``),
        ``'adaptive_bins'`` (scGPT: per-cell quantile bins), ``'rank'`` (Geneformer: genes
        ordered by expression relative to their mean, rank embedding; MLM predicts the gene)
        or ``'value'`` (log1p(CP10k) through a linear projection; MLM regresses it).
    n_bins
        Number of value bins (default 10 for equal bins, 51 for adaptive bins).
    attention
        ``'sdpa'`` (exact softmax attention through ``scaled_dot_product_attention``) or
        ``'performer'`` (FAVOR+ linear attention with ``n_random_features`` features).
    gene_embedding
        Optional initial gene vectors: an array (genes × ``d_model``, model gene order) or a
        DataFrame indexed by gene name (genes it lacks keep their random initialisation).
    freeze_gene_embedding
        Keep the gene embedding fixed during training.

    Examples
    --------
    >>> cr.model.CellEncoder.setup_anndata(adata, layer="counts")
    >>> model = cr.model.CellEncoder(adata, n_layers=2, d_model=64)
    >>> model.train(max_epochs=10, batch_size=1024, plan_kwargs={"chunk_size": 64})
    >>> adata.obsm["X_cellencoder"] = model.get_latent_representation()
    """

    _module_cls = CellEncoderModule
    _training_plan_cls = CellEncoderTrainingPlan

    def __init__(
        self,
        adata: AnnData | None = None,
        *,
        n_layers: int = 4,
        d_model: int = 128,
        n_heads: int = 4,
        dropout: float = 0.1,
        max_seq_len: int = 256,
        tokenization: str = "equal_bins",
        n_bins: int | None = None,
        attention: str = "sdpa",
        n_random_features: int = 64,
        gene_embedding: np.ndarray | pd.DataFrame | None = None,
        freeze_gene_embedding: bool = False,
    ):
        if adata is None:
            raise ValueError("CellEncoder needs the AnnData registered with `CellEncoder.setup_anndata`.")
        if tokenization not in SCHEMES:
            raise ValueError(f"tokenization must be one of {SCHEMES}, got {tokenization!r}.")
        super().__init__(adata)
        n_bins = n_bins or DEFAULT_BINS.get(tokenization, 10)
        supervised = self.adata_manager.registry["setup_args"]["labels_key"] is not None
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_labels=self.summary_stats.n_labels,
            n_layers=n_layers,
            d_model=d_model,
            n_heads=n_heads,
            dropout=dropout,
            max_seq_len=max_seq_len,
            tokenization=tokenization,
            n_bins=n_bins,
            attention=attention,
            n_random_features=n_random_features,
            supervised=supervised,
        )
        self._initialise_from_data(supervised)
        if gene_embedding is not None:
            table, found = gene_embedding_rows(gene_embedding, self.adata.var_names, d_model)
            self.module.encoder.embedding.set_gene_embedding(
                torch.as_tensor(table), torch.as_tensor(found), freeze_gene_embedding
            )
        self._model_summary_string = (
            f"CellEncoder: {n_layers} layers, d_model {d_model}, {n_heads} heads, {attention} attention, "
            f"{tokenization} tokens, max_seq_len {max_seq_len}, {self.summary_stats.n_vars} genes"
        )
        self.init_params_ = self._get_init_params(locals())

    def _initialise_from_data(self, supervised: bool) -> None:
        """Buffers computed from the training data (overwritten by the saved state on load)."""
        if self.module.tokenization == "rank":
            scale = mean_nonzero_log_expression(self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY))
            self.module.gene_scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        if supervised:
            codes = (
                np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY)).ravel().astype(int)
            )
            weights = balanced_class_weights(codes, self.summary_stats.n_labels)
            self.module.class_weights.copy_(torch.as_tensor(weights, dtype=torch.float32))

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        batch_key: str | None = None,
        labels_key: str | None = None,
        **kwargs,
    ) -> None:
        """Register raw counts (``adata.X`` or ``layer``), and optional batch and label columns.

        The counts must be non-negative integers; the registered ``var_names`` become the
        gene vocabulary. ``labels_key`` enables the supervised cell-type head.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        counts = get_matrix(adata, layer)
        check_counts(counts, "the counts passed to CellEncoder.setup_anndata")
        if sparse.issparse(counts) and not sparse.isspmatrix(counts):
            where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
            raise TypeError(
                f"scvi-tools registers scipy sparse matrices, not sparse arrays: convert first with "
                f"`{where} = scipy.sparse.csr_matrix({where})`."
            )
        check_unique_genes(adata.var_names)
        for key in (batch_key, labels_key):
            if key is not None and key not in adata.obs.columns:
                raise ValueError(f"{key!r} is not a column of adata.obs.")
        if labels_key is not None and adata.obs[labels_key].isna().any():
            raise ValueError(f"adata.obs[{labels_key!r}] has missing labels; fill or drop those cells first.")
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        ]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    def train(
        self,
        max_epochs: int | None = 20,
        batch_size: int = 256,
        load_sparse_tensor: bool | None = None,
        plan_kwargs: dict | None = None,
        **kwargs,
    ):
        """Pretrain; ``batch_size`` is the effective (contrastive) batch.

        ``plan_kwargs`` go to :class:`~cellrep.model._trainingplan.CellEncoderTrainingPlan`:
        ``chunk_size`` (cells encoded at once, default 64), ``lr``, ``warmup_steps``,
        ``gradient_clip_val``, ``mlm_weight``, ``contrastive_weight``, ``supervised_weight``,
        ``temperature``, ``mask_ratio`` and ``subsample_rate``. Other keyword arguments go to
        :meth:`scvi.model.base.UnsupervisedTrainingMixin.train` (for example
        ``accelerator``, ``train_size``, ``check_val_every_n_epoch``).
        Minibatches are loaded as sparse tensors when the counts are a scipy CSR/CSC matrix
        (``load_sparse_tensor=None``) and tokenized on the fly.

        ``model.history`` then holds per-epoch DataFrames ``train_loss``, ``mlm_loss_train``,
        ``contrastive_loss_train``, ``supervised_loss_train`` and ``lr``, and with a
        validation set (``check_val_every_n_epoch=1``) ``validation_loss``,
        ``mlm_loss_validation``, ``contrastive_loss_validation``, ``supervised_loss_validation``
        (unweighted objectives; ``*_loss`` totals are weighted).
        """
        if load_sparse_tensor is None:
            load_sparse_tensor = _loads_as_sparse_tensor(self.adata_manager)
        return super().train(
            max_epochs=max_epochs,
            batch_size=batch_size,
            load_sparse_tensor=load_sparse_tensor,
            plan_kwargs=plan_kwargs,
            **kwargs,
        )

    # --- query data ------------------------------------------------------------------------
    def _aligned(self, adata: AnnData | None) -> AnnData:
        """``adata`` on the model genes (a registered AnnData is used as it is)."""
        if adata is None:
            return self._validate_anndata()
        if adata.var_names.equals(self.adata.var_names) and self.get_anndata_manager(adata) is not None:
            return self._validate_anndata(adata)
        aligned = align_to_vocabulary(
            adata,
            self.adata.var_names,
            layer=self.registry_["setup_args"]["layer"],
            fixed_obs=_known_categories(self.registry_),
        )
        return self._validate_anndata(aligned)

    def _batches(self, adata: AnnData | None, batch_size: int | None):
        adata = self._aligned(adata)
        loader = self._make_data_loader(
            adata=adata,
            batch_size=batch_size or 256,
            load_sparse_tensor=_loads_as_sparse_tensor(self.get_anndata_manager(adata, required=True)),
        )
        self.module.eval()
        return loader

    @torch.inference_mode()
    def get_latent_representation(
        self, adata: AnnData | None = None, *, pooling: str = "cls", batch_size: int | None = None
    ) -> np.ndarray:
        """Cell embeddings (cells × ``d_model``) without augmentation or dropout.

        A query AnnData is aligned to the model genes by name (missing genes are treated as
        not expressed, with a warning; no shared gene is an error).
        """
        latent = [
            self.module.embed(tensors[REGISTRY_KEYS.X_KEY], pooling).float().cpu()
            for tensors in self._batches(adata, batch_size)
        ]
        return torch.cat(latent).numpy()

    @torch.inference_mode()
    def get_gene_attention(
        self, adata: AnnData | None = None, *, genes=None, layer: int = -1, batch_size: int | None = 64
    ) -> pd.DataFrame | sparse.csr_matrix:
        """Gene × gene attention of block ``layer``, averaged over heads and cells.

        Entry ``(a, b)`` is the attention gene ``a``'s token pays to gene ``b``'s token,
        averaged over heads and over the cells in which both genes are tokens (0 if never).
        The attention probabilities are computed explicitly (SDPA does not return them).

        Returns a DataFrame (``genes`` × ``genes``) when ``genes`` is given, else a sparse
        CSR matrix over all model genes in model order.
        """
        vocabulary = self.adata.var_names
        selected = vocabulary if genes is None else pd.Index(genes)
        missing = selected[~selected.isin(vocabulary)]
        if len(missing):
            raise ValueError(f"{len(missing)} requested genes are not model genes, e.g. {list(missing[:5])}.")
        device = self.device
        position = torch.full((len(vocabulary) + 3,), -1, dtype=torch.long)
        position[torch.as_tensor(vocabulary.get_indexer(selected))] = torch.arange(len(selected))
        position = position.to(device)
        n = len(selected)
        totals = sparse.csr_matrix((n, n), dtype=np.float64)
        counts = sparse.csr_matrix((n, n), dtype=np.float64)
        for tensors in self._batches(adata, batch_size):
            tokens = self.module.tokenize(tensors[REGISTRY_KEYS.X_KEY].to(device))
            attention = self.module.encoder.attention_probabilities(tokens, layer)
            index = position[tokens.gene_ids].masked_fill(~tokens.gene_token_mask, -1)
            pairs = (index[:, :, None] >= 0) & (index[:, None, :] >= 0)
            cell, i, j = torch.nonzero(pairs, as_tuple=True)
            rows, cols = index[cell, i].cpu().numpy(), index[cell, j].cpu().numpy()
            totals += sparse.csr_matrix(
                (attention[cell, i, j].double().cpu().numpy(), (rows, cols)), shape=(n, n)
            )
            counts += sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
        mean = totals.copy()
        mean.data = totals.data / counts.data  # same sparsity pattern: both summed over the same pairs
        if genes is None:
            return mean.astype(np.float32)
        return pd.DataFrame(mean.toarray().astype(np.float32), index=selected, columns=selected)

    @classmethod
    def load(cls, dir_path: str, adata: AnnData | None = None, **kwargs):
        """Load a saved model; an AnnData on other genes is first aligned to the model genes."""
        if adata is not None and adata is not False:
            attr_dict, var_names, _, _ = _load_saved_files(dir_path, False, prefix=kwargs.get("prefix"))
            genes = pd.Index(var_names)
            if not adata.var_names.equals(genes):
                registry = attr_dict["registry_"]
                layer = registry["setup_args"]["layer"]
                adata = align_to_vocabulary(adata, genes, layer=layer, fixed_obs=_known_categories(registry))
        return super().load(dir_path, adata=adata, **kwargs)


def _known_categories(registry: dict) -> dict[str, str]:
    """A registered category for each registered obs column (the encoder ignores them at inference)."""
    fixed = {}
    for registry_key, setup_key in (
        (REGISTRY_KEYS.BATCH_KEY, "batch_key"),
        (REGISTRY_KEYS.LABELS_KEY, "labels_key"),
    ):
        obs_key = registry["setup_args"][setup_key]
        if obs_key is not None:
            mapping = registry["field_registries"][registry_key]["state_registry"]["categorical_mapping"]
            fixed[obs_key] = str(mapping[0])
    return fixed


def _loads_as_sparse_tensor(adata_manager: AnnDataManager) -> bool:
    """scvi-tools converts scipy CSR/CSC *matrices* (not sparse arrays) to torch sparse tensors."""
    counts = adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
    return isinstance(counts, sparse.csr_matrix | sparse.csc_matrix)
