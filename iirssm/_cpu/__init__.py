"""Numba CPU kernels. Kernels take C-contiguous (P, L) or (P, L, Q) arrays; see ``_arraytools``."""
