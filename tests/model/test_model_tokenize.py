"""Tokenization schemes against hand-computed examples, and the masking/subsampling rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.model.model_fixtures import single_torch_thread  # noqa: F401

from cellrep.model._augment import mask_tokens, n_tokens_to_mask, subsample_genes
from cellrep.model._nn import TokenEmbedding
from cellrep.model._tokenize import tokenize

PAD, CLS = 6, 5  # ids for a 5-gene vocabulary


def as_input(rows, layout):
    dense = torch.tensor(rows, dtype=torch.float32)
    return {"dense": dense, "csr": dense.to_sparse_csr(), "csc": dense.to_sparse_csc()}[layout]


@pytest.fixture(params=["dense", "csr", "csc"])
def layout(request):
    return request.param


def test_equal_bins_hand_computed(layout):
    # cell 0: library 10000, so log1p(CP10k) = log1p(count): g4 9.21 -> capped 4, g1 3.43 -> 3, g2 2.40 -> 2
    x = as_input([[0, 30, 10, 0, 9960], [2, 0, 0, 0, 0], [0, 0, 0, 0, 0]], layout)
    tokens = tokenize(x, n_genes=5, max_seq_len=2, scheme="equal_bins", n_bins=5)
    none = 5 + 1  # the "no value" id of a 5-bin vocabulary
    assert tokens.gene_ids.tolist() == [[CLS, 4, 1], [CLS, 0, PAD], [CLS, PAD, PAD]]
    assert tokens.value_ids.tolist() == [[none, 4, 3], [none, 4, none], [none, none, none]]
    assert tokens.padding_mask.tolist() == [[False, False, False], [False, False, True], [False, True, True]]
    np.testing.assert_allclose(tokens.values[0, 1:].numpy(), np.log1p([9960, 30]), rtol=1e-6)
    np.testing.assert_allclose(tokens.values[1, 1].item(), np.log1p(1e4), rtol=1e-6)


def test_adaptive_bins_hand_computed(layout):
    # cell 0 non-zeros 5, 5, 1, 10: CDF 10 -> 1, 5 -> 3/4, 1 -> 1/4; bin = ceil(4 F) - 1; the
    # quantiles use all non-zero genes although only 3 are kept; ties keep gene order
    x = as_input([[5, 5, 1, 0, 10], [0, 0, 7, 7, 0]], layout)
    tokens = tokenize(x, n_genes=5, max_seq_len=3, scheme="adaptive_bins", n_bins=4)
    assert tokens.gene_ids.tolist() == [[CLS, 4, 0, 1], [CLS, 2, 3, PAD]]
    assert tokens.value_ids.tolist() == [[5, 3, 2, 2], [5, 3, 3, 5]]


def test_rank_orders_by_expression_relative_to_gene_scale(layout):
    x = as_input([[4, 8, 0, 5, 0]], layout)
    plain = tokenize(x, n_genes=5, max_seq_len=10, scheme="rank", n_bins=5)
    assert plain.gene_ids.tolist() == [[CLS, 1, 3, 0]]
    assert plain.value_ids.tolist() == [[11, 0, 1, 2]]  # ranks; 11 = max_seq_len + 1 is "no value"
    scale = torch.tensor([1.0, 1.0, 1.0, 0.5, 1.0])  # gene 3 is usually low: it ranks first
    scaled = tokenize(x, n_genes=5, max_seq_len=10, scheme="rank", n_bins=5, gene_scale=scale)
    assert scaled.gene_ids.tolist() == [[CLS, 3, 1, 0]]


def test_value_scheme_keeps_log_normalized_values(layout):
    x = as_input([[1, 0, 3, 0, 0]], layout)
    tokens = tokenize(x, n_genes=5, max_seq_len=10, scheme="value", n_bins=5)
    assert tokens.gene_ids.tolist() == [[CLS, 2, 0]]
    np.testing.assert_allclose(tokens.values[0].numpy(), [0, np.log1p(7500), np.log1p(2500)], rtol=1e-6)


def test_unknown_scheme_is_rejected():
    with pytest.raises(ValueError, match="tokenization must be one of"):
        tokenize(torch.ones(1, 2), n_genes=2, max_seq_len=2, scheme="bins", n_bins=3)


def test_number_of_masked_tokens():
    n_tokens = torch.tensor([0, 1, 3, 10, 20, 7])
    assert n_tokens_to_mask(n_tokens, 0.15).tolist() == [0, 1, 1, 2, 3, 1]
    assert n_tokens_to_mask(n_tokens, 0.5).tolist() == [0, 1, 2, 5, 10, 4]
    assert n_tokens_to_mask(n_tokens, 0.0).tolist() == [0] * 6


def random_tokens(seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.8, size=(50, 30)) * (rng.random((50, 30)) < 0.5)
    return tokenize(
        torch.as_tensor(counts, dtype=torch.float32),
        n_genes=30,
        max_seq_len=12,
        scheme="equal_bins",
        n_bins=5,
    )


def test_masking_hits_only_gene_tokens_with_the_exact_count():
    tokens = random_tokens()
    torch.manual_seed(0)
    masked = mask_tokens(tokens, 0.3).value_masked
    genes = tokens.gene_token_mask
    assert not masked[:, 0].any()
    assert not (masked & tokens.padding_mask).any()
    assert masked.sum(1).tolist() == n_tokens_to_mask(genes.sum(1), 0.3).tolist()
    # every gene position is masked under some seed (uniform choice)
    union = torch.zeros_like(masked)
    for seed in range(40):
        torch.manual_seed(seed)
        union |= mask_tokens(tokens, 0.3).value_masked
    assert torch.equal(union, genes)


def test_subsampling_keeps_cls_and_at_least_one_gene():
    tokens = random_tokens(1)
    torch.manual_seed(0)
    view = subsample_genes(tokens, 0.9)
    assert not view.padding_mask[:, 0].any()
    assert (view.padding_mask | ~tokens.padding_mask).all()  # padding stays padding
    has_genes = tokens.gene_token_mask.any(1)
    assert torch.equal(view.gene_token_mask.any(1), has_genes)
    dropped = (tokens.gene_token_mask & ~view.gene_token_mask).sum() / tokens.gene_token_mask.sum()
    assert 0.7 < dropped < 0.95


@pytest.mark.parametrize("scheme", ["equal_bins", "rank", "value"])
def test_masked_tokens_hide_what_mlm_predicts(scheme):
    tokens = tokenize(torch.tensor([[3.0, 1.0, 0.0, 2.0]]), n_genes=4, max_seq_len=4, scheme=scheme, n_bins=5)
    embedding = TokenEmbedding(4, 8, scheme, n_value_ids=5 if scheme != "rank" else 4)
    masked = tokens.replace(value_masked=torch.tensor([[False, True, False, False]]))
    other = tokens.replace(
        gene_ids=tokens.gene_ids.clone().index_put_((torch.tensor([0]), torch.tensor([1])), torch.tensor(3)),
        value_ids=tokens.value_ids.clone().index_put_(
            (torch.tensor([0]), torch.tensor([1])), torch.tensor(0)
        ),
        values=tokens.values.clone().index_put_((torch.tensor([0]), torch.tensor([1])), torch.tensor(9.0)),
        value_masked=masked.value_masked,
    )
    first, second = embedding(masked)[0, 1], embedding(other)[0, 1]
    if scheme == "rank":  # the gene identity is hidden, its rank is not
        assert torch.equal(embedding(masked.replace(value_ids=other.value_ids))[0, 1], second)
    else:  # the value is hidden, the gene is not
        assert torch.equal(embedding(masked.replace(gene_ids=other.gene_ids))[0, 1], second)
    assert not torch.equal(first, embedding(tokens)[0, 1])
