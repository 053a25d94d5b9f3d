"""Placeholder: being implemented."""


def sctop_basis(*args, **kwargs):
    raise NotImplementedError("sctop_basis is being implemented")


def sctop_score(*args, **kwargs):
    raise NotImplementedError("sctop_score is being implemented")
