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

from ._data import check_counts_to_register, loader_kwargs, statistics_counts
from ._distributed import distributed_training
from ._module import CellEncoderModule
from ._tokenize import SCHEMES
from ._training import quiet_training, training_arguments
from ._trainingplan import CellEncoderTrainingPlan
from ._vocabulary import (
    align_to_vocabulary,
    balanced_class_weights,
    check_unique_genes,
    gene_embedding_rows,
    mean_nonzero_log_expression,
    pca_gene_embedding,
)
from ._windows import ChunkWindowDataSplitter, check_chunk_window

logger = logging.getLogger(__name__)
DEFAULT_BINS = {"equal_bins": 10, "adaptive_bins": 51}
VALUE_EMBEDDING_SCALE = 0.1


class CellEncoder(UnsupervisedTrainingMixin, BaseModelClass):
    """Transformer cell encoder pretrained with MLM and divide-and-conquer contrastive learning.

    Each cell becomes a sequence of its non-zero genes (at most ``max_seq_len``, the most
    expressed first) after a CLS token; a gene token is the sum of a gene-identity embedding
    and a value embedding chosen by ``tokenization``. Pre-LayerNorm transformer blocks encode
    it; the mean of the gene states (or the CLS state) is the cell embedding.

    By default the gene-identity table starts from the linear representation: the PCA
    loadings of the training cells' standardized log expression (``cr.tl.pca``), so the
    untrained encoder already embeds a cell near the mean of its expressed genes' principal
    axes, and pretraining must earn anything it adds. Precomputed gene embeddings are the
    precedent of CellLM (gene2vec-style inputs) and scBERT (gene2vec).

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
        Initial gene vectors: ``'pca'`` (default, see above and
        :func:`~cellrep.model._vocabulary.pca_gene_embedding`), ``'random'`` (N(0, 1)), an
        array (genes × ``d_model``, model gene order) or a DataFrame indexed by gene name
        (genes it lacks keep their random initialisation).
    freeze_gene_embedding
        Keep the gene embedding fixed during training.
    pooling
        Default cell embedding: ``'mean'`` of the gene-token states or the ``'cls'`` state.
    n_token_genes
        Only the ``n_token_genes`` most variable genes of the training cells (scanpy's
        seurat_v3 flavour through ``cr.pp.select_genes``) become tokens, as scGPT tokenizes
        highly variable genes; ``None`` tokenizes every gene. Among all genes the most expressed
        ones are mostly housekeeping genes, which say little about the cell type. The
        vocabulary (and query alignment) still covers every registered gene. With counts on
        disk, the token genes and the PCA table come from a 20 000-cell sample (see
        :meth:`setup_anndata`).

    Examples
    --------
    >>> cr.model.CellEncoder.setup_anndata(adata, layer="counts")
    >>> model = cr.model.CellEncoder(adata)
    >>> model.train(max_time=300)  # seconds; the learning-rate schedule ends with the budget
    >>> adata.obsm["X_cellencoder"] = model.get_latent_representation()
    """

    _module_cls = CellEncoderModule
    _training_plan_cls = CellEncoderTrainingPlan
    _data_splitter_cls = ChunkWindowDataSplitter

    def __init__(
        self,
        adata: AnnData | None = None,
        *,
        n_layers: int = 2,
        d_model: int = 64,
        n_heads: int = 4,
        dropout: float = 0.1,
        max_seq_len: int = 64,
        tokenization: str = "equal_bins",
        n_bins: int | None = None,
        attention: str = "sdpa",
        n_random_features: int = 64,
        gene_embedding: str | np.ndarray | pd.DataFrame | None = "pca",
        freeze_gene_embedding: bool = False,
        pooling: str = "mean",
        n_token_genes: int | None = 3000,
    ):
        if adata is None:
            raise ValueError("CellEncoder needs the AnnData registered with `CellEncoder.setup_anndata`.")
        if tokenization not in SCHEMES:
            raise ValueError(f"tokenization must be one of {SCHEMES}, got {tokenization!r}.")
        if isinstance(gene_embedding, str) and gene_embedding not in ("pca", "random"):
            raise ValueError(
                f"gene_embedding must be 'pca', 'random', an array or a DataFrame, got {gene_embedding!r}."
            )
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
            pooling=pooling,
        )
        self._initialise_from_data(supervised)
        self._initialise_token_genes(n_token_genes)
        self._initialise_gene_embedding(gene_embedding, freeze_gene_embedding, d_model)
        self._statistics_cache = None
        self._model_summary_string = (
            f"CellEncoder: {n_layers} layers, d_model {d_model}, {n_heads} heads, {attention} attention, "
            f"{tokenization} tokens, max_seq_len {max_seq_len}, {self.summary_stats.n_vars} genes"
        )
        self.init_params_ = self._get_init_params(locals())

    def _initialise_token_genes(self, n_token_genes: int | None) -> None:
        n_genes = self.summary_stats.n_vars
        if n_token_genes is None or n_token_genes >= n_genes:
            return
        if n_token_genes < 1:
            raise ValueError(f"n_token_genes must be positive or None, got {n_token_genes}.")
        from ..pp import select_genes

        counts = AnnData(self._statistics_counts().astype(np.float32))
        select_genes(counts, method="hvg", n_top=n_token_genes)
        self.module.token_genes.copy_(torch.as_tensor(counts.var["highly_variable"].to_numpy()))

    def _initialise_gene_embedding(self, gene_embedding, freeze: bool, d_model: int) -> None:
        embedding = self.module.encoder.embedding
        if gene_embedding is None or (isinstance(gene_embedding, str) and gene_embedding == "random"):
            embedding.gene.weight.requires_grad_(not freeze)
            return
        if isinstance(gene_embedding, str):  # 'pca', on the genes that become tokens
            counts = self._statistics_counts()
            token_genes = self.module.token_genes.cpu().numpy()
            gene_embedding = np.zeros((len(token_genes), d_model), dtype=np.float32)
            gene_embedding[token_genes] = pca_gene_embedding(counts[:, token_genes], d_model, random_state=0)
        table, found = gene_embedding_rows(gene_embedding, self.adata.var_names, d_model)
        embedding.set_gene_embedding(torch.as_tensor(table), torch.as_tensor(found), freeze)
        # the random value table would otherwise dominate every token at initialisation
        embedding.scale_value_embedding(VALUE_EMBEDDING_SCALE)

    def _statistics_counts(self) -> sparse.csr_matrix:
        """All training counts in memory, or a sample of cells read once from disk (see ``_data``)."""
        if getattr(self, "_statistics_cache", None) is None:
            self._statistics_cache = statistics_counts(self.adata_manager)
        return self._statistics_cache

    def _initialise_from_data(self, supervised: bool) -> None:
        """Buffers computed from the training data (overwritten by the saved state on load)."""
        if self.module.tokenization == "rank":
            scale = mean_nonzero_log_expression(self._statistics_counts())
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
        labels_key: str | None = None,
        **kwargs,
    ) -> None:
        """Register raw counts (``adata.X`` or ``layer``) and an optional label column.

        The counts must be non-negative integers; the registered ``var_names`` become the
        gene vocabulary. ``labels_key`` enables the supervised cell-type head (see
        :meth:`finetune`). The encoder has no batch input: batch effects are left to the
        augmentations (depth thinning, gene dropout) and the downstream classifier.

        The counts may stay on disk: a backed AnnData (``anndata.read_h5ad(path,
        backed='r')``, CSR) or a lazily loaded one (``cr.read_lazy(path)``: X a dask array of
        CSR or dense chunks of cells; after ``anndata.experimental.read_lazy`` first set
        ``adata.obs = adata.obs.to_memory()``). Then they are checked on a random sample of
        ``STATISTICS_SAMPLE`` (20 000) cells, and the statistics the model takes from its
        training cells (token genes, PCA gene table, rank gene scale) come from that sample;
        class weights use every label. Training and embedding read through scvi-tools'
        dataset: a backed file reads exactly each random minibatch's cells; a dask array is
        trained on window by window (``chunk_window`` of :meth:`train`: each chunk read once
        per epoch), and embedded in file order, a minibatch at a time.
        A TypeError names the fix for CSC or gene-chunked counts on disk and for a lazy ``obs``.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_counts_to_register(adata, layer)
        check_unique_genes(adata.var_names)
        if labels_key is not None and labels_key not in adata.obs.columns:
            raise ValueError(f"{labels_key!r} is not a column of adata.obs.")
        if labels_key is not None and adata.obs[labels_key].isna().any():
            raise ValueError(f"adata.obs[{labels_key!r}] has missing labels; fill or drop those cells first.")
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        ]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    def train(
        self,
        max_epochs: int | None = None,
        batch_size: int = 128,
        *,
        max_time: float | dict | None = None,
        load_sparse_tensor: bool | None = None,
        chunk_window: int | str | None = "auto",
        plan_kwargs: dict | None = None,
        **kwargs,
    ):
        """Pretrain; ``batch_size`` is the effective (contrastive) batch.

        Give ``max_epochs``, ``max_time`` (seconds, or a dict such as ``{"minutes": 5}``) or
        both; training stops at whichever comes first, and the learning-rate schedule (warm-up
        over ``warmup_fraction`` of training, cosine to 0) is sized to that real end. Without
        either, 20 epochs. A ``batch_size`` above a quarter of the training cells is lowered to
        it (with a warning) so that an epoch has several optimiser steps.

        ``plan_kwargs`` go to :class:`~cellrep.model._trainingplan.CellEncoderTrainingPlan`:
        ``chunk_size`` (``'auto'``: chunked, memory-flat steps only when the batch does not
        fit), ``lr``, ``warmup_fraction``, ``gradient_clip_val``, ``mlm_weight``,
        ``contrastive_weight``, ``supervised_weight``, ``variance_weight``, ``temperature``,
        ``mask_ratio``, ``subsample_rate`` and ``thinning``. Other keyword arguments go to
        :meth:`scvi.model.base.UnsupervisedTrainingMixin.train` (for example
        ``accelerator``, ``train_size``, ``check_val_every_n_epoch``). The progress bar
        advances every step.

        Across processes, ``strategy`` is one of Lightning's DDP strategies with ``devices=N``
        (CPU: the gloo backend): ``'ddp'`` relaunches the running script once per extra
        process (run ``python train.py``; under pytest it raises a ValueError), ``'ddp_spawn'``
        needs an ``if __name__ == "__main__":`` guard, ``'ddp_notebook'``/``'ddp_fork'`` fork
        (notebooks), or a ``DDPStrategy``; any other strategy raises a ValueError.
        ``batch_size`` stays the global batch: each process takes ``batch_size // N`` cells of
        every step (scvi-tools' distributed sampler), the contrastive negatives are gathered
        from all processes, and a step updates the weights as one process would on the whole
        batch. Every process draws the same train/validation split (``scvi.settings.seed``, 0
        if unset). Each process runs the rest of the script too: guard output with
        ``model.trainer.is_global_zero``.

        ``chunk_window`` applies to lazily loaded counts (a dask array, ``cr.read_lazy``) in one
        process: each epoch shuffles the order of the chunks, reads ``chunk_window`` consecutive
        chunks of that order in one call, shuffles their cells and cuts the minibatches from
        them (see ``cellrep.model._windows``), so every chunk is read once per epoch instead
        of nearly every chunk at every step. ``'auto'`` takes as many chunks as hold about
        10 000 cells (10 chunks of 1 000 cells, 1 of ``cr.read_lazy``'s default 10 000). A larger
        window mixes cells from more places of the file into each minibatch (closer to random
        minibatches, which matters when the file is ordered, e.g. by sample or cell type) at the
        cost of memory: the window's CSR, about cells × non-zeros per cell × 8 bytes (10 000
        cells with 2 500 non-zeros: 200 MB), is in memory at once. For an ordered file, small
        chunks (e.g. ``chunk_size=1000``) mix more places at the same memory. ``None`` keeps
        scvi-tools' random minibatches, each read from every chunk its cells fall in. Backed and
        in-memory counts, and DDP, always use scvi-tools' random minibatches. The number of
        chunks used is ``model.trainer.datamodule.chunk_window`` (None without windows).

        ``model.history`` then holds per-epoch numeric DataFrames ``train_loss``,
        ``mlm_loss_train``, ``contrastive_loss_train``, ``supervised_loss_train`` and ``lr``, and
        with a validation set (``check_val_every_n_epoch=1``) ``validation_loss``,
        ``mlm_loss_validation``, ``contrastive_loss_validation``, ``supervised_loss_validation``
        (unweighted objectives; ``*_loss`` totals are weighted).
        """
        check_chunk_window(chunk_window)
        if load_sparse_tensor is None:
            load_sparse_tensor = _loads_as_sparse_tensor(self.adata_manager)
        arguments = training_arguments(
            self.adata.n_obs, max_epochs, batch_size, max_time, kwargs.get("train_size"), plan_kwargs
        )
        kwargs.setdefault("simple_progress_bar", False)
        kwargs, batch_size = distributed_training(kwargs, arguments.batch_size, self.adata.n_obs)
        kwargs["datasplitter_kwargs"] = (
            loader_kwargs(self.adata_manager)
            | {"chunk_window": chunk_window}
            | (kwargs.get("datasplitter_kwargs") or {})
        )
        self.module.train()  # Lightning keeps the eval mode an embedding call left
        with quiet_training():
            result = super().train(
                max_epochs=arguments.max_epochs,
                batch_size=batch_size,
                load_sparse_tensor=load_sparse_tensor,
                plan_kwargs=arguments.plan_kwargs,
                **arguments.trainer_kwargs,
                **kwargs,
            )
        self.history_ = {key: frame.apply(pd.to_numeric) for key, frame in self.history_.items()}
        return result

    # --- fine-tuning ------------------------------------------------------------------------
    def finetune(
        self,
        adata: AnnData,
        labels_key: str,
        *,
        max_epochs: int | None = None,
        max_time: float | dict | None = None,
        batch_size: int = 128,
        plan_kwargs: dict | None = None,
        **kwargs,
    ) -> CellEncoder:
        """A new encoder initialised from this one and trained with the supervised head.

        The scvi-tools idiom of ``SCANVI.from_scvi_model``: ``adata`` (same genes, raw counts
        in the registered layer) is set up with ``labels_key``, a supervised copy of this
        model takes all its weights, and it trains on the class-weighted cross-entropy of the
        label head on the pooled embedding (``supervised_weight=1``, no MLM or contrastive
        term unless ``plan_kwargs`` says otherwise; learning rate 5e-4, no warm-up). This
        model is left unchanged. Use :meth:`predict` on the result.
        """
        layer = self.registry_["setup_args"]["layer"]
        if not adata.var_names.equals(self.adata.var_names):
            raise ValueError("finetune needs an AnnData on the model genes, in the model order.")
        type(self).setup_anndata(adata, layer=layer, labels_key=labels_key)
        params = {k: v for k, v in self.init_params_["non_kwargs"].items()} | self.init_params_["kwargs"].get(
            "kwargs", {}
        )
        params["gene_embedding"] = "random"  # replaced by the state below
        params.pop("freeze_gene_embedding", None)
        tuned = type(self)(adata, **params)
        state = {k: v for k, v in self.module.state_dict().items() if k != "class_weights"}
        tuned.module.load_state_dict(state, strict=False)
        tuned.module.encoder.embedding.gene.weight.requires_grad_(
            self.module.encoder.embedding.gene.weight.requires_grad
        )
        tuned._initialise_label_head()
        plan = {
            "supervised_weight": 1.0,
            "mlm_weight": 0.0,
            "contrastive_weight": 0.0,
            "variance_weight": 0.0,
            "lr": 5e-4,
            "warmup_fraction": 0.0,
        } | (plan_kwargs or {})
        tuned.train(
            max_epochs=max_epochs, max_time=max_time, batch_size=batch_size, plan_kwargs=plan, **kwargs
        )
        return tuned

    def _initialise_label_head(self) -> None:
        """Linear probing before fine-tuning (LP-FT, Kumar et al. 2022): the label head starts as a
        class-balanced logistic regression on the frozen embedding, so fine-tuning starts from the
        probe instead of a random head that would first distort the pretrained features."""
        from sklearn.linear_model import LogisticRegression

        latent = self.get_latent_representation()
        codes = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY)).ravel().astype(int)
        probe = LogisticRegression(max_iter=1000, class_weight="balanced").fit(latent, codes)
        weight = np.zeros((self.summary_stats.n_labels, latent.shape[1]), dtype=np.float32)
        bias = np.full(self.summary_stats.n_labels, -1e4, dtype=np.float32)  # classes absent here
        if probe.coef_.shape[0] == 1:  # two classes: sklearn keeps one row
            coef = np.vstack([-probe.coef_[0] / 2, probe.coef_[0] / 2])
            intercept = np.array([-probe.intercept_[0] / 2, probe.intercept_[0] / 2])
        else:
            coef, intercept = probe.coef_, probe.intercept_
        weight[probe.classes_], bias[probe.classes_] = coef, intercept
        with torch.no_grad():
            self.module.label_head.weight.copy_(torch.as_tensor(weight))
            self.module.label_head.bias.copy_(torch.as_tensor(bias))

    @torch.inference_mode()
    def predict(
        self, adata: AnnData | None = None, *, key_added: str | None = None, batch_size: int | None = None
    ) -> pd.DataFrame:
        """Cell-type probabilities of the label head (cells × classes); needs :meth:`finetune`.

        With ``key_added`` they are written like :func:`cellrep.tl.transfer_labels` writes
        them: ``obs[f'{key_added}_pred']`` (categorical), ``obs[f'{key_added}_confidence']``
        (largest probability) and ``obsm[f'{key_added}_proba']`` (float32, classes in
        ``uns[f'{key_added}_classes']``).
        """
        if self.module.label_head is None:
            raise ValueError(
                "predict needs a supervised encoder: call `model.finetune(adata, labels_key=...)`."
            )
        target = adata if adata is not None else self.adata
        with quiet_training():
            proba = torch.cat(
                [
                    self.module.label_probabilities(tensors[REGISTRY_KEYS.X_KEY]).float().cpu()
                    for tensors in self._batches(adata, batch_size)
                ]
            ).numpy()
        mapping = self.registry_["field_registries"][REGISTRY_KEYS.LABELS_KEY]["state_registry"]
        classes = np.asarray(mapping["categorical_mapping"]).astype(str)
        frame = pd.DataFrame(proba, index=target.obs_names, columns=classes)
        if key_added is not None:
            target.obs[f"{key_added}_pred"] = pd.Categorical(
                classes[proba.argmax(1)], categories=list(classes)
            )
            target.obs[f"{key_added}_confidence"] = proba.max(1)
            target.obsm[f"{key_added}_proba"] = proba.astype(np.float32)
            target.uns[f"{key_added}_classes"] = list(classes)
        return frame

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
            **loader_kwargs(self.get_anndata_manager(adata, required=True)),
        )
        self.module.eval()
        return loader

    @torch.inference_mode()
    def get_latent_representation(
        self, adata: AnnData | None = None, *, pooling: str | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """Cell embeddings (cells × ``d_model``) without augmentation or dropout.

        ``pooling`` defaults to the model's (``'mean'`` unless set otherwise).

        A query AnnData is aligned to the model genes by name (missing genes are treated as
        not expressed, with a warning; no shared gene is an error).
        """
        with quiet_training():
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
    for registry_key, setup_key in ((REGISTRY_KEYS.LABELS_KEY, "labels_key"),):
        obs_key = registry["setup_args"].get(setup_key)
        if obs_key is not None:
            mapping = registry["field_registries"][registry_key]["state_registry"]["categorical_mapping"]
            fixed[obs_key] = str(mapping[0])
    return fixed


def _loads_as_sparse_tensor(adata_manager: AnnDataManager) -> bool:
    """scvi-tools converts scipy CSR/CSC *matrices* (not sparse arrays) to torch sparse tensors."""
    counts = adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
    return isinstance(counts, sparse.csr_matrix | sparse.csc_matrix)
