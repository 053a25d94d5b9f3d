"""Placeholder: being implemented."""


def scale(*args, **kwargs):
    raise NotImplementedError("scale is being implemented")
