import numba
import pytest

import cellrep as cr
from cellrep._settings import numba_threads


def test_numba_threads_limits_and_restores():
    before = numba.get_num_threads()
    with numba_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before


def test_numba_threads_uses_global_setting(monkeypatch):
    monkeypatch.setattr(cr.settings, "n_threads", 1)
    with numba_threads():
        assert numba.get_num_threads() == 1


def test_numba_threads_rejects_non_positive():
    with pytest.raises(ValueError, match="positive"), numba_threads(0):
        pass
