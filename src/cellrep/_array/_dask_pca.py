"""PCA of dask-backed matrices: the block-Krylov solver over distributed products or over a Gram matrix.

``solver='krylov'`` is the in-memory solver of :mod:`cellrep._array._pca` with its products
distributed: each Krylov step is one pass that adds the per-chunk ``A_bᵀ (A_b Q)`` (genes ×
block width) in a tree, so the cells never meet on one machine. Centring and scaling stay
implicit (:class:`~cellrep._array._pca_operator.CenteredScaledOperator` on each chunk) and no
dense cells × genes block exists. Passes: one for the column moments, one for the start (a
random sample of cells), ``n_power_iter + 1`` Krylov steps; the scores ``A V`` stay lazy.

``solver='covariance_krylov'`` reads the data once for the genes × genes Gram matrix ``XᵀX``
(the chunks' float64 Gram matrices and column sums, added in a tree), centres and scales it,
and runs the same Krylov iteration on it in memory (``AᵀA Q`` is then one small dense
product): the same start, the same Krylov space and so the in-memory result to rounding, with
one pass over the cells instead of ``n_power_iter + 2``. It holds a genes × genes float64
matrix per task, so it serves selected genes (up to ``MAX_GRAM_GENES``) of plain matrices.
``solver='auto'`` picks it there (on 1 000 000 cells × 2000 selected genes it took 3.0 s where
the distributed Krylov steps took 9.6 s; docs/benchmarks.md), and ``'krylov'`` otherwise. Its
pass merges consecutive chunks so that a task reads at least as many bytes as its Gram partial
holds: the partials are then few enough to add and move cheaply.

``solver='covariance_eigh'`` is scanpy's dask solver: the same Gram pass, then a full dense
``eigh`` (exact eigenvectors; the ``eigh`` of a few thousand genes costs seconds of one
process, where the Krylov iteration on the Gram matrix costs a fraction).
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from scipy import linalg, sparse

from .._kernels._pca_moments import csr_gram_upper
from .._validation import check_finite
from ._dask_blocks import DaskRowBlocks, as_row_blocks, blockwise_sum, map_row_blocks, merged_row_chunks
from ._pca import (
    DEFAULT_POWER_ITERATIONS,
    START_SAMPLE_ROWS,
    PCAResult,
    _orthogonal_complement_basis,
    _orthonormal_basis,
    _single_threaded_blas,
    block_width,
    pca_matrix,
    project_onto_pcs,
)
from ._pca_operator import build_operator, column_mean_var, column_sums_squares, mean_var_from_sums

SOLVERS = ("auto", "krylov", "covariance_krylov", "covariance_eigh")
GRAM_SOLVERS = ("covariance_krylov", "covariance_eigh")
#: genes up to which a chunk's dense float64 Gram matrix (128 MiB at 4096) is held per task
MAX_GRAM_GENES = 4096


def _checked_block(block):
    if isinstance(block, np.ndarray) or sparse.issparse(block):
        check_finite(block, "a chunk of the dask array")
    return block


def _block_sums_squares(block):
    return column_sums_squares(_checked_block(block))


@column_mean_var.register(da.Array)
@column_mean_var.register(DaskRowBlocks)
def _(matrix, *, ddof=1, n_threads=None):
    sums, squares = blockwise_sum(_block_sums_squares, matrix)
    return mean_var_from_sums(sums, squares, matrix.shape[0], ddof)


def _start_block(block, left, *, center, scale):
    return build_operator(_checked_block(block), center=center, scale=scale).rmatmat(left, low_precision=True)


def _gram_block(block, *, basis, center, scale):
    """``A_bᵀ A_b Q`` of one chunk, in the working precision of the in-memory Krylov steps."""
    operator = build_operator(block, center=center, scale=scale)
    return operator.rmatmat(operator.matmat(basis, low_precision=True), low_precision=True)


def _scores_block(block, *, components_t, center, scale):
    return build_operator(block, center=center, scale=scale).matmat(components_t)


def _score_squares_block(block, *, components_t, center, scale):
    return np.square(_scores_block(block, components_t=components_t, center=center, scale=scale)).sum(axis=0)


def _krylov_top_vectors(gram, start, dimension, n_vectors, *, width, n_blocks, rng):
    """Top ``n_vectors`` eigenvectors of ``AᵀA`` and their Ritz values, ``gram(Q) = AᵀA Q`` being one pass.

    The same block Krylov space as :func:`cellrep._array._pca._top_singular_pairs` (``Q_1 =
    orth(start)``, ``Q_{i+1} = orth(AᵀA Q_i ⟂ Q_1..Q_i)``, full re-orthogonalisation); the
    Rayleigh–Ritz matrix ``Qᵀ AᵀA Q`` is filled from the products, block column by column.
    """
    max_columns = min(n_blocks * width, dimension)
    basis = np.empty((dimension, max_columns))
    rayleigh_ritz = np.zeros((max_columns, max_columns))
    candidate, n_basis, columns = start, 0, slice(0, 0)
    for index in range(n_blocks):
        with _single_threaded_blas():
            if index == 0:
                block = _orthonormal_basis(candidate)
            else:
                rayleigh_ritz[:n_basis, columns] = basis[:, :n_basis].T @ candidate
                block = _orthogonal_complement_basis(candidate, basis[:, :n_basis], dimension - n_basis, rng)
        columns = slice(n_basis, n_basis + block.shape[1])
        basis[:, columns] = block
        n_basis = columns.stop
        candidate = gram(block)
        if n_basis >= dimension:
            break
    rayleigh_ritz[:n_basis, columns] = basis[:, :n_basis].T @ candidate
    rayleigh_ritz = np.triu(rayleigh_ritz[:n_basis, :n_basis])
    rayleigh_ritz += np.triu(rayleigh_ritz, 1).T
    eigenvalues, eigenvectors = linalg.eigh(rayleigh_ritz, check_finite=False)
    top = np.argsort(eigenvalues)[::-1][:n_vectors]
    return basis[:, :n_basis] @ eigenvectors[:, top], eigenvalues[top]


#: bytes of the rows of the Gram matrix that one thread of :func:`csr_gram_upper` updates at a time
GRAM_TILE_BYTES = 2 * 2**20


def _block_gram(block):
    """Upper triangle of the uncentred ``X_bᵀ X_b`` (dense float64) and column sums of a plain chunk."""
    block = _checked_block(block)
    n_cols = block.shape[1]
    if sparse.issparse(block):
        values = block.tocsr()
        if not values.has_sorted_indices:
            values = values.sorted_indices()
        gram = np.zeros((n_cols, n_cols))
        tile_rows = max(8, GRAM_TILE_BYTES // (8 * max(n_cols, 1)))
        csr_gram_upper(
            values.data, values.indices, values.indptr, tile_rows, gram
        )  # under blockwise_sum's thread limit
        # the moments kernel adds in float64; scipy's sum(dtype=float64) adds float32 values in float32
        # (3e-5 off on 100 rows), which the uncentred variance (mean square − squared mean score) amplifies
        return gram, column_sums_squares(values)[0]
    values = np.asarray(block, dtype=np.float64)
    return np.triu(values.T @ values), values.sum(axis=0)


def _symmetric(upper: np.ndarray) -> np.ndarray:
    return upper + np.triu(upper, 1).T


def _centred_scaled_gram(gram, sums, n_rows, center, scale):
    """``AᵀA`` for ``A = (X − 1cᵀ) diag(1/s)``, from the raw Gram matrix ``XᵀX`` and the column sums."""
    if center is not None:
        gram = gram - np.outer(center, sums) - np.outer(sums, center) + n_rows * np.outer(center, center)
    if scale is not None:
        gram = gram / np.outer(scale, scale)
    return gram


def _covariance_top_vectors(gram, sums, n_rows, n_vectors, center, scale):
    """Top eigenvectors of ``AᵀA`` and its eigenvalues, from the raw Gram matrix ``XᵀX`` and column sums."""
    gram = _centred_scaled_gram(gram, sums, n_rows, center, scale)
    eigenvalues, eigenvectors = linalg.eigh(gram, check_finite=False)
    top = np.argsort(eigenvalues)[::-1][:n_vectors]
    return eigenvectors[:, top], eigenvalues[top]


@pca_matrix.register(da.Array)
@pca_matrix.register(DaskRowBlocks)
def _(
    matrix,
    *,
    n_comps=50,
    zero_center=True,
    standardize=False,
    whiten=False,
    mean=None,
    scale=None,
    random_state=0,
    n_oversamples=None,
    n_power_iter=DEFAULT_POWER_ITERATIONS,
    n_threads=None,
    solver="auto",
):
    """:func:`cellrep._array._pca.pca_matrix` of a dask-backed matrix; the scores stay lazy.

    ``solver``: ``'auto'``, ``'krylov'``, ``'covariance_krylov'`` or ``'covariance_eigh'``; see the module docstring.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}.")
    matrix = as_row_blocks(matrix)
    n_rows, n_cols = matrix.shape
    if not 1 <= n_comps <= min(n_rows, n_cols):
        raise ValueError(
            f"n_comps={n_comps} is out of range: it must be between 1 and min(n_cells, n_genes) = {min(n_rows, n_cols)}."
        )
    if solver == "auto":  # one pass where the Gram matrix is small (benchmarks/bench_dask.py)
        solver = "covariance_krylov" if matrix.make_block is None and n_cols <= MAX_GRAM_GENES else "krylov"
    if solver in GRAM_SOLVERS:
        if matrix.make_block is not None:
            raise ValueError(
                f"solver={solver!r} works on plain dask arrays only; use solver='krylov' for rank-probit "
                "values or Pearson residuals."
            )
        gram_bytes = 8.0 * n_cols * n_cols
        gram, sums = blockwise_sum(_block_gram, merged_row_chunks(matrix, gram_bytes))  # with the column sums
        gram = _symmetric(gram)
        column_mean, column_variance = mean_var_from_sums(sums, np.diag(gram).copy(), n_rows, ddof=1)
    else:
        column_mean, column_variance = column_mean_var(matrix, ddof=1)
    if standardize and scale is None:
        std = np.sqrt(column_variance)
        scale = np.where(std > 0, std, 1.0)
    if zero_center and mean is None:
        mean = column_mean
    mean = None if mean is None else np.asarray(mean, dtype=np.float64)
    scale = None if scale is None else np.asarray(scale, dtype=np.float64)
    centring = {"center": mean, "scale": scale}

    if solver == "covariance_eigh":
        vectors, sums_of_squares = _covariance_top_vectors(gram, sums, n_rows, n_comps, mean, scale)
    else:
        width = block_width(n_comps, n_oversamples, min(n_rows, n_cols))
        rng = np.random.default_rng(random_state)
        if n_rows <= START_SAMPLE_ROWS:
            start = blockwise_sum(_start_block, matrix, rng.standard_normal((n_rows, width)), **centring)
        else:  # as the in-memory solver: Aᵀ G over a sorted random sample of cells
            rows = np.sort(rng.choice(n_rows, START_SAMPLE_ROWS, replace=False))
            sample = build_operator(_checked_block(matrix.take_rows(rows)), **centring)
            start = sample.rmatmat(rng.standard_normal((rows.size, width)), low_precision=True)

        if solver == "covariance_krylov":
            normal_matrix = _centred_scaled_gram(gram, sums, n_rows, mean, scale)

            def normal_times(basis):
                return normal_matrix @ basis

        else:

            def normal_times(basis):
                return blockwise_sum(_gram_block, matrix, basis=basis, **centring)

        vectors, sums_of_squares = _krylov_top_vectors(
            normal_times, start, n_cols, n_comps, width=width, n_blocks=n_power_iter + 1, rng=rng
        )
    components = vectors.T
    # sign convention of sklearn's svd_flip(u_based_decision=False): largest |loading| positive
    largest = np.argmax(np.abs(components), axis=1)
    components = components * np.sign(components[np.arange(n_comps), largest])[:, None]

    # ‖A v‖² is the Ritz value; the mean score follows from the column means of A
    mean_of_a = column_mean - (0.0 if mean is None else mean)
    if scale is not None:
        mean_of_a = mean_of_a / scale
    mean_score = mean_of_a @ components.T
    scaled_variance = column_variance if scale is None else column_variance / scale**2
    if zero_center:
        variance = (sums_of_squares - n_rows * mean_score**2) / max(n_rows - 1, 1)
        total_variance = scaled_variance.sum()
    else:
        if solver == "krylov":
            # the Ritz values come from float32 products, and the mean square minus the squared mean
            # score cancels for the leading uncentred components: one more pass gives ‖A v‖² in float64
            sums_of_squares = blockwise_sum(
                _score_squares_block, matrix, components_t=np.ascontiguousarray(components.T), **centring
            )
        variance = sums_of_squares / n_rows - mean_score**2
        total_variance = scaled_variance.sum() * (n_rows - 1) / max(n_rows, 1)
    variance = np.maximum(variance, 0.0)
    variance_ratio = variance / total_variance if total_variance > 0 else np.zeros_like(variance)
    result = PCAResult(None, components, variance, variance_ratio, mean, scale, whiten)
    result.scores = project_onto_pcs(matrix, result)
    return result


@project_onto_pcs.register(da.Array)
@project_onto_pcs.register(DaskRowBlocks)
def _(matrix, result, *, n_threads=None):
    n_genes = result.components.shape[1]
    if matrix.shape[1] != n_genes:
        raise ValueError(
            f"The data has {matrix.shape[1]} genes but the PCA was fitted on {n_genes}; align the genes first."
        )
    scores = map_row_blocks(
        _scores_block,
        matrix,
        result.components.shape[0],
        np.float64,
        components_t=np.ascontiguousarray(result.components.T),
        center=result.mean,
        scale=result.scale,
    )
    if result.whiten:
        scores = scores / np.sqrt(np.where(result.variance > 0, result.variance, 1.0))
    return scores
