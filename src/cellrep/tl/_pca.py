"""Placeholder: being implemented."""


def pca(*args, **kwargs):
    raise NotImplementedError("pca is being implemented")
