"""Op families: each module owns every rule of its ops (float, exact, ball, signature, tangent, adjoint, SMT).

Importing this package registers every op in the rule tables.
"""

from formal.ops import activation, basic, conv, pool, tensor

__all__ = ["activation", "basic", "conv", "pool", "tensor"]
