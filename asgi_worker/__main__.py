"""``python -m asgi_worker APP``: one server process."""

import sys

from asgi_worker.cli import main

if __name__ == "__main__":
    sys.exit(main())
