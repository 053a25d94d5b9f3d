"""Placeholder: being implemented."""


def select_genes(*args, **kwargs):
    raise NotImplementedError("select_genes is being implemented")
