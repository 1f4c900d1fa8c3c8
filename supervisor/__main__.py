"""``python -m supervisor APP [flags]``: the same as ``asgi-supervise``."""

import sys

from supervisor.cli import main

sys.exit(main())
