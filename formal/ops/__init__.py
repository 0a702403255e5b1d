"""Op families: each module owns every rule of its ops.

Float, exact, ball, signature, tangent, adjoint, kink and SMT rules are
registered with :func:`formal.core.rules.register`.

Importing this package registers every op in the rule tables.
"""

from formal.ops import activation, basic, conv, pool, tensor

__all__ = ["activation", "basic", "conv", "pool", "tensor"]
