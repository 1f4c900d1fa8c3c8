"""Differential fuzzing of the two HTTP parser adapters, in process and over real sockets.

``inputs.py`` makes the requests (corpus mutants and grammar-built ones from ``grammar.py``),
``differential.py`` feeds them to both parsers and names what differs, ``findings.py`` writes a
finding as a corpus fixture pair, ``wire.py`` runs real servers, ``campaign.py`` is the command
(CONTRIBUTING.md, "Fuzzing"). The bounded in-suite run is ``tests/unit/test_parser_differential.py``.
"""
