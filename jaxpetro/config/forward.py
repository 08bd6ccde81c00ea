"""Config schema of ``jaxpetro forward`` (a garnet forward table from the built-in thermodynamic model)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from jaxpetro.config.common import OutputConfig
from jaxpetro.config.loader import option, section
from jaxpetro.errors import ConfigError

__all__ = ["BulkConfig", "ForwardConfig", "GridConfig", "SolverConfig"]

#: components of the thermodynamic system (as jaxpetro.thermo.bulk.COMPONENTS; repeated here so that
#: validating a config imports no JAX)
OXIDES = ("SiO2", "TiO2", "Al2O3", "FeO", "MgO", "MnO", "CaO", "Na2O", "K2O", "H2O", "O")
ELEMENTS = ("Si", "Ti", "Al", "Fe", "Mg", "Mn", "Ca", "Na", "K", "H", "O")
#: the most nodes one run solves (a 200 x 250 grid); beyond that, split the grid
MAX_NODES = 50_000


@dataclass(frozen=True)
class BulkConfig:
    """The rock's bulk composition: oxide wt% or element moles (exactly one of the two)."""

    oxides_wt: dict[str, float] = option({}, "oxide wt% (SiO2, TiO2, Al2O3, FeO, MgO, MnO, CaO, Na2O, K2O, H2O; "
                                              "O = excess oxygen, i.e. ferric iron: Fe2O3 = 2 FeO + O); a missing "
                                              "oxide is absent; need not sum to 100", ge=0)
    elements_mol: dict[str, float] = option({}, "element moles (Si, Ti, Al, Fe, Mg, Mn, Ca, Na, K, H, O), e.g. a "
                                                 "qmap domain's bulk; O must cover the cations' oxides", ge=0)

    def __post_init__(self):
        if bool(self.oxides_wt) == bool(self.elements_mol):
            raise ConfigError("give the bulk composition as exactly one of 'bulk.oxides_wt' (oxide wt%) or "
                              "'bulk.elements_mol' (element moles), e.g. bulk: {oxides_wt: {SiO2: 59.8, ...}}.")
        for key, given, known in (("oxides_wt", self.oxides_wt, OXIDES), ("elements_mol", self.elements_mol, ELEMENTS)):
            for k in given:
                if k not in known:
                    hint = " (give Fe2O3 as FeO + O: 1 wt% Fe2O3 = 0.900 wt% FeO + 0.100 wt% O)" if k == "Fe2O3" else ""
                    raise ConfigError(f"'bulk.{key}.{k}': not a component of the thermodynamic system; use "
                                      f"{', '.join(known)}{hint}.")
            if given and not any(v > 0 for v in given.values()):
                raise ConfigError(f"'bulk.{key}' is all zeros.")


def _axis(key: str, value: tuple[float, float, float]) -> int:
    lo, hi, step = value
    if not (lo < hi and step > 0):
        raise ConfigError(f"'{key}' must be [min, max, step] with min < max and step > 0, not {list(value)}.")
    n = math.floor((hi - lo) / step + 1e-9) + 1
    if n < 2:
        raise ConfigError(f"'{key}' = {list(value)} spans fewer than 2 nodes; use a smaller step.")
    return n


@dataclass(frozen=True)
class GridConfig:
    """The P-T grid of the table (nodes min, min + step, ... up to max)."""

    P_kbar: tuple[float, float, float] = option([4.0, 12.0, 0.5], "pressure [min, max, step] (kbar)", gt=0)
    T_C: tuple[float, float, float] = option([500.0, 700.0, 10.0], "temperature [min, max, step] (°C)", gt=-273.15)

    def __post_init__(self):
        n = _axis("grid.P_kbar", self.P_kbar) * _axis("grid.T_C", self.T_C)
        if n > MAX_NODES:
            raise ConfigError(f"the grid has {n} nodes, more than {MAX_NODES}; use larger steps in grid.P_kbar / "
                              f"grid.T_C or split the range into several runs.")


@dataclass(frozen=True)
class SolverConfig:
    """The fixed-assemblage Gibbs minimisation at each node (jaxpetro.thermo.equilibrium)."""

    tol: float = option(1e-9, "convergence: max |KKT residual| (chemical potentials in RT, mass balance in mol)", gt=0)
    max_iter: int = option(200, "Newton iterations per node", ge=5)
    retries: int = option(2, "passes restarting failed nodes from their nearest converged neighbour", ge=0)
    min_amount: float = option(1e-7, "a phase with fewer moles than this share of the total is reported "
                                     "absent (status phase_absent)", gt=0, lt=1)


@dataclass(frozen=True, kw_only=True)
class ForwardConfig:
    """Forward table: garnet composition and phase modes of a fixed assemblage on a P–T grid (built-in model)."""

    bulk: BulkConfig = section(BulkConfig, "bulk composition")
    assemblage: tuple[str, ...] = option(["g", "bi", "mu", "pl", "q"],
                                         "phases (g, bi, mu, pl; pure: q, ru, ilm, sill, ky, and, sph); must include "
                                         "g; fixed over the whole grid")
    grid: GridConfig = section(GridConfig, "P-T grid")
    solver: SolverConfig = section(SolverConfig, "equilibrium solver")
    sensitivity: bool = option(False, "also write d(garnet X)/d(bulk oxide wt%) at every node (forward.h5 "
                                      "sensitivity/, sensitivity.csv) and say which oxide moves X most")
    output: OutputConfig = section(OutputConfig, "figures")

    def __post_init__(self):
        if not self.assemblage:
            raise ConfigError("'assemblage' is empty; list the phases, e.g. assemblage: [g, bi, mu, pl, q].")
        if "g" not in self.assemblage:
            raise ConfigError(f"'assemblage' {list(self.assemblage)} has no garnet 'g'; the forward table is of "
                              f"garnet compositions.")
        dup = sorted({p for p in self.assemblage if self.assemblage.count(p) > 1})
        if dup:
            raise ConfigError(f"'assemblage' names {', '.join(dup)} more than once.")
