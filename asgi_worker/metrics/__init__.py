"""Counting what a server does, and showing it in the Prometheus format.

- ``counts``: the numbers themselves, pure. ``ServerCounts`` is always kept (a few integer
  increments per connection); ``RequestHistogram`` only when metrics are on (``--control-bind``),
  decided once per server. ``snapshot`` turns both into one JSON-able dict, ``Totals`` adds
  snapshots up (the supervisor keeps the totals of workers that are gone).
- ``exposition``: snapshots -> ``prometheus_client`` metric families and the scrape's bytes. The only
  module that imports ``prometheus_client`` (the ``metrics`` extra), imported on the first scrape.
- ``sockets``: what the kernel says about a listening socket (its accept queue).
"""
