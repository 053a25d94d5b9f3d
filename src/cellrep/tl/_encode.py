"""Placeholder: being implemented."""


def encode(*args, **kwargs):
    raise NotImplementedError("encode is being implemented")


def gene_attention(*args, **kwargs):
    raise NotImplementedError("gene_attention is being implemented")
