"""moto's server with the local stack's extensions (extensions.py) installed: the same
arguments as `moto_server`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import extensions  # noqa: E402

extensions.install()

from moto.server import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])
