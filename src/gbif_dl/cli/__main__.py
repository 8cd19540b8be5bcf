"""``python -m gbif_dl.cli``: the ``gbif-dl`` command.

Example:
    >>> import subprocess, sys
    >>> command = [sys.executable, "-m", "gbif_dl.cli", "--version"]
    >>> subprocess.run(command).returncode  # doctest: +SKIP
    0
"""

import sys

from gbif_dl.cli.main import main

if __name__ == "__main__":  # pragma: no branch
    sys.exit(main())
