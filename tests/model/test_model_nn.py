"""Attention blocks: padded keys never change outputs; explicit probabilities match the forward pass."""

from __future__ import annotations

import pytest
import torch
from tests.model.model_fixtures import single_torch_thread  # noqa: F401

from cellrep.model._nn import Encoder, PerformerAttention, SelfAttention, TokenEmbedding
from cellrep.model._tokenize import tokenize


def make_encoder(attention: str, n_features: int = 32) -> Encoder:
    torch.manual_seed(0)
    embedding = TokenEmbedding(20, 16, "equal_bins", 5)
    encoder = Encoder(
        embedding, d_model=16, n_heads=2, n_layers=2, dropout=0.1, attention=attention, n_features=n_features
    )
    return encoder.double().eval()


@pytest.mark.parametrize("attention", ["sdpa", "performer"])
def test_padded_keys_do_not_change_outputs(attention):
    encoder = make_encoder(attention)
    short = torch.zeros(1, 20)
    short[0, [2, 5, 7]] = torch.tensor([3.0, 1.0, 2.0])
    long = torch.zeros(1, 20)
    long[0, :9] = torch.arange(1.0, 10.0)
    batch = tokenize(torch.cat([short, long]), n_genes=20, max_seq_len=16, scheme="equal_bins", n_bins=5)
    alone = tokenize(short, n_genes=20, max_seq_len=16, scheme="equal_bins", n_bins=5)
    assert batch.padding_mask[0].sum() == 6
    assert not alone.padding_mask.any()
    with torch.no_grad():
        padded_out = encoder(batch)[0, :4]
        alone_out = encoder(alone)[0]
        # changing what sits in the padded slots changes nothing either
        scrambled = batch.replace(gene_ids=batch.gene_ids.masked_fill(batch.padding_mask, 3))
        scrambled_out = encoder(scrambled)[0, :4]
    torch.testing.assert_close(padded_out, alone_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(scrambled_out, alone_out, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [SelfAttention, PerformerAttention])
def test_explicit_attention_probabilities_reproduce_the_forward_pass(cls):
    torch.manual_seed(1)
    attention = cls(16, 4).double().eval()
    x = torch.randn(3, 7, 16, dtype=torch.float64)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[1, 4:] = True
    probabilities = attention.attention_probabilities(x, padding)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(3, 4, 7, dtype=torch.float64))
    assert (probabilities[1, :, :, 4:] == 0).all()
    _, _, v = attention._heads(x)
    torch.testing.assert_close(attention._merge(probabilities @ v), attention(x, padding))


def test_performer_approximates_softmax_attention_with_many_features():
    torch.manual_seed(2)
    exact = SelfAttention(16, 2).double().eval()
    approximate = PerformerAttention(16, 2, n_features=4096).double().eval()
    approximate.load_state_dict(exact.state_dict() | {"projection": approximate.projection})
    x = 0.5 * torch.randn(2, 10, 16, dtype=torch.float64)
    padding = torch.zeros(2, 10, dtype=torch.bool)
    padding[0, 6:] = True
    error = (
        (approximate.attention_probabilities(x, padding) - exact.attention_probabilities(x, padding))
        .abs()
        .max()
    )
    assert error < 0.05


def test_no_batchnorm_and_unknown_attention_rejected():
    encoder = make_encoder("sdpa")
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in encoder.modules())
    with pytest.raises(ValueError, match="attention must be"):
        make_encoder("flash")
