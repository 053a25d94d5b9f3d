"""Placeholder: being implemented."""


def pearson_residuals(*args, **kwargs):
    raise NotImplementedError("pearson_residuals is being implemented")
