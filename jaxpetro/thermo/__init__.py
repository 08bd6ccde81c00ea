"""A differentiable Holland-Powell thermodynamic forward model (pure JAX, float64).

* :mod:`jaxpetro.thermo.endmembers`: ds62 end-member Gibbs energies (modified Tait EoS, Cp
  polynomial, Landau and Bragg-Williams ordering; the H2O fluid by the CORK equation of state);
* :mod:`jaxpetro.thermo.database`: the committed parameter tables as arrays;
* :mod:`jaxpetro.thermo.solutions`: solution models as data (sites, van Laar excess), one
  generic code path for activities and chemical potentials;
* :mod:`jaxpetro.thermo.bulk`: bulk compositions in oxide components (SiO2 ... H2O, O);
* :mod:`jaxpetro.thermo.equilibrium`: fixed-assemblage Gibbs minimisation (Newton on the KKT
  system, implicit differentiation, vmapped over nodes, a status per node);
* :mod:`jaxpetro.thermo.linsolve`: the KKT solves, every CPU LAPACK call unbatched (jaxlib's batched
  one can deadlock XLA's CPU thread pool);
* :mod:`jaxpetro.thermo.growth`: garnet X_alm/X_prp/X_grs/X_sps and the fractional-growth step.

A models-level layer: imports jaxpetro.kernels._* and jaxpetro.chemistry, never io or workflows.
"""

__all__ = ["bulk", "database", "endmembers", "equilibrium", "growth", "linsolve", "solutions"]
