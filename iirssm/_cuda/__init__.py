"""CUDA backend: CuPy RawModule kernels (``.cu`` sources beside this file).

Nothing here imports CuPy at import time.
"""
