"""Placeholder: being implemented."""


def normalize_total(*args, **kwargs):
    raise NotImplementedError("normalize_total is being implemented")


def log1p(*args, **kwargs):
    raise NotImplementedError("log1p is being implemented")


def log_normalize(*args, **kwargs):
    raise NotImplementedError("log_normalize is being implemented")
