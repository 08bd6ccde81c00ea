"""Config schema of ``jaxpetro ptpath`` (P–T–t path of a zoned garnet)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxpetro.config.common import OutputConfig
from jaxpetro.config.forward import BulkConfig, SolverConfig
from jaxpetro.config.loader import option, section
from jaxpetro.errors import ConfigError

Four = tuple[float, float, float, float]


@dataclass(frozen=True)
class LinearForwardConfig:
    """Linearised table X = X0 + A (P - P0) + B (T - T0), order alm, prp, grs, sps: a first-order
    expansion of a forward model about (P0, T0) with constant sensitivities (not Spear's Gibbs
    method, whose coefficients change along the path)."""

    X0: Four = option((0.70, 0.12, 0.10, 0.08), "composition at (P0, T0)", ge=0, le=1)
    P0: float = option(8.0, "reference pressure (kbar)")
    T0: float = option(550.0, "reference temperature (°C)")
    A: Four = option((-0.004, 0.002, 0.012, -0.010), "dX/dP per end-member (1/kbar)")
    B: Four = option((-0.0001, 0.0006, -0.0002, -0.0003), "dX/dT per end-member (1/°C)")


@dataclass(frozen=True)
class FractionationConfig:
    """Mn depletion of the reactive bulk by Rayleigh fractionation (X_sps scaled by (1 - F)^(K - 1))."""

    K: float = option(1.0, "garnet/bulk partition coefficient of Mn; 1 = no correction", gt=0)
    f_rim: float = option(0.0, "volume fraction of the reactive bulk grown into garnet at the rim", ge=0, lt=1)
    r_rim_um: float | None = option(None, "rim radius (µm); empty = the largest profile radius", gt=0)


@dataclass(frozen=True)
class ForwardConfig:
    """Forward model: composition as a function of P and T (and, for ``thermo``, of the reactive bulk)."""

    kind: Literal["table", "linear", "thermo"] = option(
        "table", "table = gridded CSV / Perple_X .tab; linear = linearised table (constant sensitivities); "
                 "thermo = the built-in Gibbs minimisation per member, with fractional growth")
    path: str | None = option(None, "forward table (CSV P_kbar,T_C,X_alm,X_prp,X_grs,X_sps or Perple_X .tab)", path=True)
    linear: LinearForwardConfig = section(LinearForwardConfig, "linearised model (kind: linear)")
    fractionation: FractionationConfig = section(FractionationConfig, "optional Rayleigh correction of X_sps "
                                                                      "(table and linear only)")
    # kind: thermo (the keys of `jaxpetro forward` where they mean the same: bulk, assemblage, solver)
    bulk: BulkConfig | None = option(None, "kind thermo: the rock's bulk (oxides_wt or elements_mol), as in "
                                           "`jaxpetro forward`")
    bulk_from: str | None = option(None, "kind thermo: a qmap bulk.csv (wt% per region/domain) instead of bulk",
                                   path=True)
    domain: str | None = option(None, "kind thermo with bulk_from: the row (region, domain or polygon name) of "
                                      "bulk.csv; empty = 'section'")
    bulk_extra_wt: dict[str, float] = option({}, "kind thermo with bulk_from: oxide wt% added to the qmap bulk, "
                                                 "which maps do not measure (e.g. {H2O: 1.6, O: 0.1})", ge=0)
    assemblage: tuple[str, ...] = option(["g", "bi", "mu", "pl", "q"],
                                         "kind thermo: the fixed assemblage (must include g)")
    fractionation_efficiency: float = option(
        1.0, "kind thermo: share of each shell's garnet removed from the reactive bulk (1 = fractional "
             "growth, 0 = closed-system equilibrium with the starting bulk)", ge=0, le=1)
    solver: SolverConfig = section(SolverConfig, "kind thermo: the equilibrium solver")

    def __post_init__(self):
        if self.kind == "table" and not self.path:
            raise ConfigError(
                "forward.kind is 'table' but forward.path is empty; give the table file "
                "(e.g. forward.path: configs/data/garnet_grid_demo.csv) or use forward.kind: linear."
            )
        thermo_keys = [k for k, given in (("bulk", self.bulk is not None), ("bulk_from", bool(self.bulk_from)),
                                          ("domain", self.domain is not None), ("bulk_extra_wt", bool(self.bulk_extra_wt)))
                       if given]
        if self.kind != "thermo":
            if thermo_keys:
                raise ConfigError(f"forward.{thermo_keys[0]} is set but forward.kind is '{self.kind}'; it belongs to "
                                  f"forward.kind: thermo (set that, or remove the key).")
            return
        if (self.bulk is None) == (not self.bulk_from):
            raise ConfigError("forward.kind is 'thermo': give the reactive bulk as exactly one of forward.bulk "
                              "(oxides_wt or elements_mol) or forward.bulk_from (a qmap bulk.csv, with "
                              "forward.domain).")
        if self.bulk is not None and (self.domain is not None or self.bulk_extra_wt):
            raise ConfigError("forward.domain and forward.bulk_extra_wt go with forward.bulk_from, not forward.bulk; "
                              "put every oxide into forward.bulk.oxides_wt instead.")
        fr = self.fractionation
        if fr.K != 1.0 or fr.f_rim != 0.0 or fr.r_rim_um is not None:
            raise ConfigError(
                "forward.fractionation (the Rayleigh Mn factor) cannot be combined with forward.kind: thermo, which "
                "removes every grown shell from the reactive bulk itself (all components, not only Mn); remove "
                "forward.fractionation and use forward.fractionation_efficiency (0..1) instead.")
        if not self.assemblage or "g" not in self.assemblage:
            raise ConfigError(f"forward.assemblage {list(self.assemblage)} has no garnet 'g'; the profile is garnet, "
                              f"e.g. forward.assemblage: [g, bi, mu, pl, q].")
        dup = sorted({p for p in self.assemblage if self.assemblage.count(p) > 1})
        if dup:
            raise ConfigError(f"forward.assemblage names {', '.join(dup)} more than once.")
        for k in self.bulk_extra_wt:
            if k not in ("SiO2", "TiO2", "Al2O3", "FeO", "MgO", "MnO", "CaO", "Na2O", "K2O", "H2O", "O"):
                raise ConfigError(f"forward.bulk_extra_wt.{k}: not a component of the thermodynamic system; use SiO2, "
                                  f"TiO2, Al2O3, FeO, MgO, MnO, CaO, Na2O, K2O, H2O or O (excess oxygen).")


@dataclass(frozen=True)
class GrowthConfig:
    """Growth law dr/dt = k0 exp(-Q / (R T)) (r / r_ref)^-m; gives time per shell (t_Myr) when
    k0 and Q are set; with ``walk: time`` it is part of the system model (the random walk of P and
    T runs in time), and with ages k0 and Q are estimated (these values are then the prior means)."""

    k0_um_per_Myr: float | None = option(None, "pre-exponential growth rate (µm/Myr)", gt=0)
    Q_J_per_mol: float | None = option(None, "activation energy (J/mol)", ge=0)
    walk: Literal["time", "radius"] = option(
        "time", "time = random walk in time, noise per shell ∝ Δt = Δr / G(T); radius = walk in radius, "
                "t_Myr computed afterwards")
    radius_exponent: float = option(0.0, "m of G ∝ (r / r_ref)^-m: 0 interface control, 1 diffusion-limited", ge=0)
    r_ref_um: float = option(1000.0, "reference radius of the radius dependence (µm)", gt=0)
    ln_k0_sd: float = option(2.3, "prior sd of ln k0 when ages are given (2.3: a factor 10)", gt=0)
    Q_sd_J_per_mol: float = option(20000.0, "prior sd of Q when ages are given (J/mol)", gt=0)

    def __post_init__(self):
        if (self.k0_um_per_Myr is None) != (self.Q_J_per_mol is None):
            raise ConfigError("growth: set both k0_um_per_Myr and Q_J_per_mol for a time axis, or neither.")


@dataclass(frozen=True)
class EnsembleConfig:
    """Ensemble Kalman smoother along radius: the fields of
    :class:`jaxpetro.kernels.enks.SmootherOptions` (same names, same defaults; tested)."""

    # Fewer than ~10 members collapse the ensemble spread (bands of ~1e-12 kbar, checked):
    # refuse them rather than return a confident wrong path.
    size: int = option(500, "ensemble members (>= 10; 200-1000 is usual)", ge=10)
    variant: Literal["stochastic", "sqrt"] = option(
        "stochastic", "analysis: perturbed observations or deterministic square root"
    )
    smoother: Literal["ies", "enks", "rts"] = option(
        "ies", "ies: iterative ensemble smoother over the whole profile (started from the EnKS; table and linear "
               "models; thermo falls back to enks); enks: ensemble Kalman smoother; rts: ensemble RTS smoother")
    lag: int | None = option(None, "smoother lag in shells; empty = full (every earlier shell)", ge=0)
    inflation: float = option(1.0, "multiplicative inflation of forecast anomalies", ge=1.0)
    iterations: int = option(
        1, "assimilations per shell: 1 = ordinary EnKS; K > 1 = ES-MDA (each shell's observation assimilated K "
           "times with R inflated by K, the forward model re-evaluated between; for strongly nonlinear tables)",
        ge=1, le=20)
    ies_iterations: int = option(12, "smoother ies: Levenberg-Marquardt iterations", ge=1, le=100)
    ies_damping: float = option(1.0, "smoother ies: initial Levenberg-Marquardt damping", ge=0)
    ies_mh_steps: int = option(40, "smoother ies: Metropolis-Hastings steps correcting the iterated ensemble "
                                   "toward the exact posterior (0 = none)", ge=0, le=1000)


@dataclass(frozen=True)
class HyperConfig:
    """Noise scales; an empty value is estimated by maximising the marginal likelihood
    (``steps`` and ``learning_rate`` are :class:`jaxpetro.kernels.enks.MaximiseOptions`, same
    defaults; ``members`` is the size of the likelihood's ensemble)."""

    q_P: float | None = option(None, "process noise of P per unit radius (kbar/sqrt(µm)); empty = estimate", gt=0)
    q_T: float | None = option(None, "process noise of T per unit radius (°C/sqrt(µm)); empty = estimate", gt=0)
    sd: float | None = option(
        None, "measurement sd of every fraction; empty = the profile's _sd columns, else estimated", gt=0
    )
    model_sd: float | None = option(
        None, "forward-model error sd per fraction (always in R); empty = estimated when the measurement sds "
              "are known (_sd columns or sd), else included in the estimated sd; 0 = none", ge=0)
    model_corr_sd: float | None = option(
        None, "sd of a forward-model error correlated between shells (smooth in radius, per fraction; smoother "
              "ies only); empty = estimated; 0 = none", ge=0)
    model_corr_um: float | None = option(
        None, "correlation length of that error along radius (µm); empty = estimated", gt=0)
    steps: int = option(120, "Adam iterations of the estimation", ge=1)
    learning_rate: float = option(0.1, "Adam step size (on log scales)", gt=0)
    members: int = option(200, "ensemble members of the likelihood estimate (table model)", ge=10)


@dataclass(frozen=True)
class ObservationConfig:
    """How a shell's four end-member fractions enter the likelihood."""

    closure: bool = option(
        True, "observe three independent fractions of the four renormalised to sum 1, with the covariance "
              "propagated from the _sd columns (delta method); false = the four as measured, diagonal R")
    drop: Literal["X_alm", "X_prp", "X_grs", "X_sps"] = option(
        "X_alm", "the end-member left out of the three (the likelihood does not depend on the choice)")


@dataclass(frozen=True)
class McmcConfig:
    """NumPyro NUTS reference posterior of the MRF formulation (Kuwatani et al. 2012) on the same
    forward model and noise (the noise scales of the ensemble run)."""

    enabled: bool = option(False, "also sample the path with NUTS (minutes; a reference, not the default)")
    chains: int = option(2, "chains (run vectorised in one process)", ge=1)
    samples: int = option(500, "samples per chain after warm-up", ge=10)
    warmup: int = option(500, "warm-up (adaptation) iterations per chain", ge=10)
    target_accept: float = option(0.85, "target acceptance probability of NUTS", gt=0, lt=1)


@dataclass(frozen=True)
class PriorConfig:
    """Prior of the first shell: mean at the centre of each range, sd a quarter of its width."""

    P_kbar: tuple[float, float] | None = option(None, "pressure range (kbar); empty = the table's extent")
    T_C: tuple[float, float] | None = option(None, "temperature range (°C); empty = the table's extent")

    def __post_init__(self):
        for name, rng in (("P_kbar", self.P_kbar), ("T_C", self.T_C)):
            if rng is not None and not rng[0] < rng[1]:
                raise ConfigError(f"prior.{name}: the range must be [low, high] with low < high, got {list(rng)}.")


@dataclass(frozen=True, kw_only=True)  # kw_only: the required 'profile' follows defaulted keys
class PtpathConfig:
    """P–T–t path of a zoned garnet (ensemble Kalman smoother along radius)."""

    seed: int = option(0, "seed of every random step (same seed, same numbers)", ge=0)
    profile: str = option(help="zoning profile CSV: radius_um, X_alm, X_prp, X_grs, X_sps [, <column>_sd]", path=True)
    inclusions: str | None = option(
        None, "inclusion thermobarometry CSV: radius_um, P_kbar, T_C, P_sd, T_sd [, PT_corr]", path=True)
    constraints: str | None = option(
        None, "line constraints CSV (P = a + b T with an sd in P): radius_um, a_kbar, b_kbar_per_C, sd_kbar", path=True)
    ages: str | None = option(None, "ages CSV: radius_um, age_Ma, age_sd_Ma (estimates k0 and Q; needs growth)",
                              path=True)
    observation: ObservationConfig = section(ObservationConfig, "likelihood of the compositions")
    forward: ForwardConfig = section(ForwardConfig, "forward model")
    growth: GrowthConfig = section(GrowthConfig, "growth law (time axis)")
    ensemble: EnsembleConfig = section(EnsembleConfig, "ensemble smoother")
    hyperparameters: HyperConfig = section(HyperConfig, "noise scales")
    prior: PriorConfig = section(PriorConfig, "prior of the core")
    map_check: bool = option(True, "also compute the MAP path (L-BFGS) as a deterministic cross-check")
    sensitivity: bool = option(False, "write the Jacobian of the smoothed path w.r.t. the observed compositions")
    mcmc: McmcConfig = section(McmcConfig, "NUTS reference posterior")
    output: OutputConfig = section(OutputConfig, "figures")

    def __post_init__(self):
        if self.ages and self.growth.k0_um_per_Myr is None:
            raise ConfigError(
                "ages are given but no growth law: set growth.k0_um_per_Myr and growth.Q_J_per_mol (the prior "
                "means of the rate constants the ages estimate), or drop ages.")
        if self.ages and self.growth.walk != "time":
            raise ConfigError("ages need growth.walk: time (the clock is part of the state); set it or drop ages.")
        if self.forward.kind == "thermo" and self.mcmc.enabled:
            raise ConfigError("mcmc.enabled is not available with forward.kind: thermo (the MRF posterior has no "
                              "fractionation history: each shell's bulk depends on the whole path before it); "
                              "set mcmc.enabled: false.")


__all__ = [
    "EnsembleConfig",
    "ForwardConfig",
    "FractionationConfig",
    "GrowthConfig",
    "HyperConfig",
    "LinearForwardConfig",
    "McmcConfig",
    "ObservationConfig",
    "PriorConfig",
    "PtpathConfig",
]
