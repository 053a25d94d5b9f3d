"""Placeholder: being implemented."""


def linear_embedding(*args, **kwargs):
    raise NotImplementedError("linear_embedding is being implemented")


def project(*args, **kwargs):
    raise NotImplementedError("project is being implemented")
