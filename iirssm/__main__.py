"""``python -m iirssm``: the ``iirssm`` command line."""

import sys

from iirssm._cli import main

if __name__ == "__main__":
    sys.exit(main())
