"""A differentiable Holland-Powell thermodynamic forward model (pure JAX, float64).

* :mod:`jaxpetro.thermo.endmembers`: ds62 end-member Gibbs energies (modified Tait EoS, Cp
  polynomial, Landau and Bragg-Williams ordering);
* :mod:`jaxpetro.thermo.database`: the committed parameter tables as arrays;
* :mod:`jaxpetro.thermo.solutions`: solution models as data (sites, van Laar excess), one
  generic code path for activities and chemical potentials.

A models-level layer: imports jaxpetro.kernels._* and jaxpetro.chemistry, never io or workflows.
"""

__all__ = ["database", "endmembers", "solutions"]
