"""The control listener (``--control-bind``): ``/metrics``, ``/livez``, ``/readyz`` on a port of its own.

- ``protocol``: pure. One request per connection, read whole (bounded), answered, closed.
- ``listener``: the non-blocking sockets, driven by whoever owns the loop: the supervisor's own
  poll loop, or a thread of its own in a single process (``ControlThread``), so it answers
  while the app's event loop is blocked or busy.
- ``endpoints``: what a single process answers (the supervisor has its own, in
  ``supervisor/telemetry.py``).
"""
