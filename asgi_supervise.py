"""The ``asgi-supervise`` console script: check that ``supervisor`` is ours, then run it.

The import name ``supervisor`` is also supervisord's (PyPI "supervisor", Debian's python3-supervisor).
When both are installed in one environment one shadows the other; this module lives outside the
package so that it can say so in one line instead of failing with an ImportError traceback.
"""

from __future__ import annotations

import sys


def main() -> int:
    """Run ``supervisor.main`` if the ``supervisor`` package is asgi-worker's; exit 1 otherwise."""
    try:
        import supervisor
    except ImportError as exc:
        sys.stderr.write(f"asgi-supervise: error: cannot import the supervisor package: {exc}\n")
        return 1
    if not getattr(supervisor, "IS_ASGI_WORKER_SUPERVISOR", False):
        where = getattr(supervisor, "__file__", None) or "?"
        sys.stderr.write(
            f"asgi-supervise: error: the 'supervisor' package at {where} is not asgi-worker's "
            "(supervisord uses the same name); install asgi-worker in its own virtualenv\n"
        )
        return 1
    result: int = supervisor.main()
    return result


if __name__ == "__main__":
    sys.exit(main())
