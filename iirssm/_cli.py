"""The ``iirssm`` command line: ``iirssm demo``, ``filter``, ``bench`` and ``info``.

Installed as the ``iirssm`` console script and runnable as ``python -m iirssm``.
``import iirssm`` never imports this module.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from iirssm import _demo

    return _demo.run(None if args.no_plot else args.output)


def _info(args: argparse.Namespace) -> int:
    from iirssm import _info

    print("\n".join(_info.report()))
    return 0


def _parser() -> argparse.ArgumentParser:
    from iirssm import __version__

    parser = argparse.ArgumentParser(
        prog="iirssm",
        description="Fast first-order IIR filters, EMAs and state-space models on NumPy.",
    )
    parser.add_argument("--version", action="version", version=f"iirssm {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="smooth the shipped Mauna Loa CO2 record with time-stamped EMAs",
        description="Smooth the shipped Mauna Loa weekly CO2 record (with missing weeks) "
        "using iirssm.ema(..., times=..., adjust=True) at a few half-lives, print a "
        "summary and save a plot (the plot needs matplotlib: pip install iirssm[plot]).",
    )
    where = demo.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", type=Path, default=Path("iirssm-demo.png"),
                       metavar="PATH", help="PNG file to write (default: %(default)s)")
    where.add_argument("--no-plot", action="store_true", help="print the summary only")
    demo.set_defaults(func=_demo)

    from iirssm import _benchcmd, _filtercmd

    _filtercmd.add_parser(commands)
    _benchcmd.add_parser(commands)

    info = commands.add_parser(
        "info", help="show versions, threads and backends",
        description="Show the versions of iirssm and its dependencies, the optional "
        "packages found, Numba's threads and the available backends.",
    )
    info.set_defaults(func=_info)
    return parser


def main(argv: Sequence[str | os.PathLike] | None = None) -> int:
    """Run the ``iirssm`` command.

    Parameters
    ----------
    argv : sequence of str or path-like, optional
        The arguments, without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status: 0 on success. Invalid arguments make argparse print
        the usage and raise ``SystemExit(2)``.

    Examples
    --------
    >>> from iirssm._cli import main
    >>> main(["demo", "--no-plot"])  # doctest: +SKIP
    0
    """
    args = _parser().parse_args(None if argv is None else [os.fspath(a) for a in argv])
    return args.func(args)
