"""Placeholder: being implemented."""


def rank_probit(*args, **kwargs):
    raise NotImplementedError("rank_probit is being implemented")


def get_rank_probit(*args, **kwargs):
    raise NotImplementedError("get_rank_probit is being implemented")
