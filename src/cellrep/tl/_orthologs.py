"""Placeholder: being implemented."""


def map_orthologs(*args, **kwargs):
    raise NotImplementedError("map_orthologs is being implemented")
