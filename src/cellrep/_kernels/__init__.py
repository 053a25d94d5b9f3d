"""Numba kernels on raw arrays. Modules here import nothing from the rest of cellrep."""
