"""The independent certificate kernel (``formal verify``).

It reads a ``formal-cert/1`` certificate and the formal-net/1 network it embeds,
evaluates the network itself in exact rational arithmetic (``fractions`` only),
computes its own directional derivatives, pattern maps and AD (with its own
proxy table, written from docs/proxies.md), and checks every claim; for
``formal check --cross-check`` it also decides small networks itself
(``decide.py``, with its own exact simplex in ``lp.py``).  It imports
nothing from the rest of ``formal`` except ``formal.errors`` (pyproject's
import-linter contract and tests/test_verify.py enforce this).
"""
