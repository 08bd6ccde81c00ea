"""Gibbs energies of Holland & Powell (2011) end-members, in JAX.

Each published equation is one helper, vectorised over a set of end-members (arrays of shape
``(k,)``). Units: pressure P in Pa, temperature T in K, energies in J/mol, volumes in m^3/mol
(the SI form of the ds62 data set as distributed with BurnMan; kJ and kbar are not used here).

The apparent Gibbs energy of formation is (Holland & Powell 2011, eqs 1-13)

    G(P, T) = H0 + int_T0^T Cp dT - T (S0 + int_T0^T Cp/T dT) + int_P0^P V dP
              [+ G_Landau (tricritical, quartz ...)] [+ G_Bragg-Williams (Al-Si order in feldspars ...)]

with Cp = a + bT + c/T^2 + d/sqrt(T), the modified Tait equation of state shifted by an Einstein
thermal pressure, the Landau correction of Holland & Powell (2011, appendix; the 'landaunote'
form, relative to the standard state) and the Bragg-Williams order-disorder term of Holland &
Powell (1996, appendix A2) with its order parameter at equilibrium.

Fluid end-members (H2O) have no Tait EoS: their Gibbs energy is the ideal gas at 1 bar plus
RT ln f of the CORK equation of state (Holland & Powell 1991; :func:`cork_gibbs`), the form
used for H2O in ds62.

Volumes are dG/dP by automatic differentiation (the order parameter of the Bragg-Williams term
is solved numerically and held fixed under differentiation: G is stationary in it, so first
derivatives are exact by the envelope theorem; second derivatives of that term are not).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

R_GAS = 8.31446261815324  # J/K/mol, CODATA 2018 (the value BurnMan uses)
T_REF = 298.15  # K
P_REF = 1.0e5  # Pa (1 bar)

__all__ = [
    "P_REF", "R_GAS", "T_REF", "CorkParams", "EndmemberParams", "bragg_williams_gibbs", "cork_gibbs",
    "cork_ln_fugacity_coefficient", "cork_volume", "cp_enthalpy", "cp_entropy", "einstein_temperature", "endmember_gibbs", "endmember_volume", "landau_gibbs", "tait_constants",
    "tait_int_vdp", "tait_volume", "thermal_pressure",
]


class EndmemberParams(eqx.Module):
    """ds62 parameters of ``k`` end-members (one array per parameter, SI units).

    Attributes:
        H0, S0, V0: standard-state enthalpy (J/mol), entropy (J/K/mol), volume (m^3/mol).
        cp: (k, 4) heat-capacity coefficients a, b, c, d of Cp = a + bT + cT^-2 + dT^-1/2.
        a0: thermal expansion (1/K); K0 bulk modulus (Pa); K1 = K', K2 = K'' (1/Pa); natoms: n.
        landau: (k, 3) Tc0 (K), S_D (J/K/mol), V_D (m^3/mol); zero rows for none.
        has_landau: (k,) 1.0 where the Landau term applies.
        bw: (k, 6) deltaH, deltaV, Wh, Wv, n, factor of the Bragg-Williams term; has_bw: (k,) 1.0/0.0.
    """

    H0: Float[Array, " k"]
    S0: Float[Array, " k"]
    V0: Float[Array, " k"]
    cp: Float[Array, "k 4"]
    a0: Float[Array, " k"]
    K0: Float[Array, " k"]
    K1: Float[Array, " k"]
    K2: Float[Array, " k"]
    natoms: Float[Array, " k"]
    landau: Float[Array, "k 3"]
    has_landau: Float[Array, " k"]
    bw: Float[Array, "k 6"]
    has_bw: Float[Array, " k"]


def tait_constants(K0, K1, K2):
    """a, b, c of the modified Tait equation of state (Holland & Powell 2011, eq. 4)."""
    a = (1.0 + K1) / (1.0 + K1 + K0 * K2)
    b = K1 / K0 - K2 / (1.0 + K1)
    c = (1.0 + K1 + K0 * K2) / (K1 * K1 + K1 - K0 * K2)
    return a, b, c


def einstein_temperature(S0, natoms):
    """Einstein temperature estimated from S0 (Holland & Powell 2011, p. 346): 10636 / (S0/n + 6.44) K."""
    return 10636.0 / (S0 / natoms + 6.44)


def _einstein_energy(T, theta, natoms):
    """Einstein thermal energy 3nR theta / (exp(theta/T) - 1) (J/mol)."""
    return 3.0 * natoms * R_GAS * theta / jnp.expm1(theta / T)


def _einstein_cv(T, theta, natoms):
    """Einstein heat capacity 3nR x^2 e^x / (e^x - 1)^2, x = theta/T (J/K/mol)."""
    x = theta / T
    return 3.0 * natoms * R_GAS * x * x * jnp.exp(x) / jnp.expm1(x) ** 2


def thermal_pressure(T, p: EndmemberParams):
    """Thermal pressure relative to T0 (Pa): a0 K0 / Cv(T0) (E_th(T) - E_th(T0))
    (Holland & Powell 2011, eq. 11; the Einstein xi function with alpha K / Cv constant)."""
    theta = einstein_temperature(p.S0, p.natoms)
    cv0 = _einstein_cv(T_REF, theta, p.natoms)
    return p.a0 * p.K0 / cv0 * (_einstein_energy(T, theta, p.natoms) - _einstein_energy(T_REF, theta, p.natoms))


def cp_enthalpy(T, cp: Float[Array, "k 4"]):
    """int_T0^T Cp dT for Cp = a + bT + c/T^2 + d/sqrt(T) (J/mol; Holland & Powell 1998, eq. 2)."""
    a, b, c, d = cp[:, 0], cp[:, 1], cp[:, 2], cp[:, 3]

    def h(t):
        return a * t + 0.5 * b * t * t - c / t + 2.0 * d * jnp.sqrt(t)

    return h(T) - h(T_REF)


def cp_entropy(T, cp: Float[Array, "k 4"]):
    """int_T0^T Cp / T dT (J/K/mol; Holland & Powell 1998, eq. 2)."""
    a, b, c, d = cp[:, 0], cp[:, 1], cp[:, 2], cp[:, 3]

    def s(t):
        return a * jnp.log(t) + b * t - 0.5 * c / (t * t) - 2.0 * d / jnp.sqrt(t)

    return s(T) - s(T_REF)


def tait_int_vdp(P, T, p: EndmemberParams):
    """int_P0^P V dP of the thermal modified Tait EoS (J/mol; Holland & Powell 2011, eq. 13),
    written without the division by P - P0 so that P = P0 needs no special case."""
    a, b, c = tait_constants(p.K0, p.K1, p.K2)
    pth = thermal_pressure(T, p)
    dp = P - P_REF
    return p.V0 * ((1.0 - a) * dp + a * ((1.0 - b * pth) ** (1.0 - c) - (1.0 + b * (dp - pth)) ** (1.0 - c))
                   / (b * (c - 1.0)))


def tait_volume(P, T, p: EndmemberParams):
    """V(P, T) of the thermal modified Tait EoS (m^3/mol; Holland & Powell 2011, eq. 12)."""
    a, b, c = tait_constants(p.K0, p.K1, p.K2)
    pth = thermal_pressure(T, p)
    return p.V0 * (1.0 - a * (1.0 - (1.0 + b * (P - P_REF - pth)) ** (-c)))


def _safe_sqrt(x):
    """sqrt(max(x, 0)) with a finite gradient at and below 0 (the disordered branch)."""
    pos = x > 0.0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def landau_gibbs(P, T, landau: Float[Array, "k 3"]):
    """Tricritical Landau excess (J/mol) relative to the standard state (Holland & Powell 2011,
    eq. 7 with the corrected Tc/Tc* terms of Holland's 'landaunote'):
    Tc = Tc0 + V_D (P - P0) / S_D, Q^4 = (Tc - T) / Tc0 below Tc (0 above),
    G = Tc0 S_D (Q0^2 - Q0^6/3) - S_D (Tc Q^2 - Tc0 Q^6/3) - T S_D (Q0^2 - Q^2) + (P - P0) V_D Q0^2."""
    tc0, sd, vd = landau[:, 0], landau[:, 1], landau[:, 2]
    tc0s = jnp.where(tc0 > 0.0, tc0, 1.0)  # rows without a Landau term: any positive dummy
    sds = jnp.where(sd != 0.0, sd, 1.0)
    q0sq = _safe_sqrt((tc0s - T_REF) / tc0s)
    tc = tc0s + vd * (P - P_REF) / sds
    qsq = _safe_sqrt((tc - T) / tc0s)
    return (tc0s * sd * (q0sq - q0sq**3 / 3.0) - sd * (tc * qsq - tc0s * qsq**3 / 3.0)
            - T * sd * (q0sq - qsq) + (P - P_REF) * vd * q0sq)


def _bw_factors(factor):
    """The two site weights of the Bragg-Williams model (BurnMan's convention for the ds62
    'factor': f > 0 gives (f, f), f < 0 gives (1, -f))."""
    pos = factor > 0.0
    return jnp.where(pos, factor, 1.0), jnp.where(pos, factor, -factor)


def _bw_reaction(Q, dH, W, T, n, f0, f1):
    """-dG/dQ of the Bragg-Williams model (Holland & Powell 1996, eqs A2-2 and A2-4):
    dH + RT n/(n+1) [f0 ln(n(1-Q)) + f1 ln(1-Q) - f0 ln(1+nQ) - f1 ln(n+Q)] + (2Q - 1) W."""
    lnk = n / (n + 1.0) * (f0 * jnp.log(n * (1.0 - Q)) + f1 * jnp.log(1.0 - Q)
                           - f0 * jnp.log(1.0 + n * Q) - f1 * jnp.log(n + Q))
    return dH + R_GAS * T * lnk + (2.0 * Q - 1.0) * W


def _bw_entropy(Q, n, f0, f1):
    """Configurational entropy of the two-site Bragg-Williams model (J/K/mol; Holland & Powell
    1996, appendix A2): species fractions (1+nQ)/(n+1), n(1-Q)/(n+1) on the first site and
    (1-Q)/(n+1), (n+Q)/(n+1) on the n-fold second site."""
    d = n + 1.0
    return -R_GAS * (f0 * ((1.0 + n * Q) * jnp.log((1.0 + n * Q) / d) + n * (1.0 - Q) * jnp.log(n * (1.0 - Q) / d))
                     + f1 * (n * (1.0 - Q) * jnp.log((1.0 - Q) / d) + n * (n + Q) * jnp.log((n + Q) / d))) / d


def bragg_williams_gibbs(P, T, bw: Float[Array, "k 6"], has_bw: Float[Array, " k"]):
    """Bragg-Williams order-disorder excess (J/mol; Holland & Powell 1996):
    G = (1 - Q) dH + (1 - Q) Q W - T S_conf(Q), dH = deltaH + P deltaV, W = Wh + P Wv, at the
    equilibrium order parameter Q (root of :func:`_bw_reaction` in (0, 1), found by 80
    bisection steps; Q = 0, full disorder, when there is no root). Q is held fixed under
    differentiation (G is stationary in Q)."""
    on = has_bw > 0.0
    dH = bw[:, 0] + P * bw[:, 1]
    W = bw[:, 2] + P * bw[:, 3]
    n = jnp.where(on, bw[:, 4], 1.0)
    f0, f1 = _bw_factors(jnp.where(on, bw[:, 5], 1.0))
    lo0, hi0 = 1.0e-12, 1.0 - 1.0e-12
    T_ = jax.lax.stop_gradient(T)
    dHs, Ws = jax.lax.stop_gradient(dH), jax.lax.stop_gradient(W)
    ns, f0s, f1s = jax.lax.stop_gradient((n, f0, f1))

    def fn(q):
        return _bw_reaction(q, dHs, Ws, T_, ns, f0s, f1s)

    f_lo = fn(jnp.full_like(dH, lo0))
    has_root = (f_lo > 0.0) & on  # f -> -inf as Q -> 1, so a positive f at Q -> 0 brackets a root

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        up = fn(mid) > 0.0
        return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 80, bisect, (jnp.full_like(dH, lo0), jnp.full_like(dH, hi0)))
    Q = jax.lax.stop_gradient(jnp.where(has_root, 0.5 * (lo + hi), 0.0))
    g = (1.0 - Q) * dH + (1.0 - Q) * Q * W - T * _bw_entropy(Q, n, f0, f1)
    return jnp.where(on, g, 0.0)


def endmember_gibbs(P, T, p: EndmemberParams) -> Float[Array, " k"]:
    """Apparent Gibbs energy of formation G(P, T) of every end-member (J/mol)."""
    g = (p.H0 + cp_enthalpy(T, p.cp) - T * (p.S0 + cp_entropy(T, p.cp)) + tait_int_vdp(P, T, p))
    g = g + p.has_landau * landau_gibbs(P, T, p.landau)
    return g + bragg_williams_gibbs(P, T, p.bw, p.has_bw)


def endmember_volume(P, T, p: EndmemberParams) -> Float[Array, " k"]:
    """Molar volume dG/dP (m^3/mol), with the ordering terms' volumes."""
    return jax.jacfwd(lambda pp: endmember_gibbs(pp, T, p))(jnp.asarray(P, dtype=jnp.float64))


# ---------------------------------------------------------------------------- CORK fluids


class CorkParams(eqx.Module):
    """CORK parameters of ``k`` fluid end-members (Holland & Powell 1991, 1998), in the papers'
    units (kJ, kbar, K), plus their ideal-gas standard state (SI, as :class:`EndmemberParams`).

    Attributes:
        H0 (J/mol), S0 (J/K/mol), cp (k, 4) (J/K/mol): ideal gas at 1 bar.
        a: (k, 4) MRK a(T) = a_0 + a_1 (T - Ta) + a_2 (T - Ta)^2 + a_3 (T - Ta)^3
            (kJ^2 kbar^-1 K^1/2 mol^-2), the supercritical branch.
        b: (k,) MRK b (kJ/kbar/mol).
        virial: (k, v, 3) terms [k0, k1, gamma] of V_virial = sum (k0 + k1 T) (P - P0)^gamma
            (kJ/kbar/mol; Holland & Powell 1998 for H2O: gamma 1, 1/2, 1/4, T-independent).
        P0: (k,) pressure above which the virial terms act (kbar).
        Ta, Tc: (k,) reference temperature of a(T), and the critical temperature of the MRK
            fit (K): below Tc the model has liquid and gas branches, not implemented here (the
            Gibbs energy is NaN there, so an equilibrium that needs it reports a non-finite node).
    """

    H0: Float[Array, " k"]
    S0: Float[Array, " k"]
    cp: Float[Array, "k 4"]
    a: Float[Array, "k 4"]
    b: Float[Array, " k"]
    virial: Float[Array, "k v 3"]
    P0: Float[Array, " k"]
    Ta: Float[Array, " k"]
    Tc: Float[Array, " k"]


_R_KJ = R_GAS * 1e-3  # kJ/K/mol: the CORK parameters are in kJ and kbar
_MRK_ITER = 60  # Newton steps for the MRK volume (quadratic convergence from the gas side: ~8 suffice at 1-20 kbar)


def _mrk_a(T, p: CorkParams):
    dt = T - p.Ta
    return p.a[:, 0] + dt * (p.a[:, 1] + dt * (p.a[:, 2] + dt * p.a[:, 3]))


def _mrk_cubic(V, Pk, T, a, b):
    """P V^3 - RT V^2 - (bRT + b^2 P - a/sqrt T) V - ab/sqrt T: zero at the MRK volume
    (P = RT/(V - b) - a / (V (V + b) sqrt T), Holland & Powell 1991 eq. 4), kJ and kbar."""
    rt = _R_KJ * T
    st = jnp.sqrt(T)
    return ((Pk * V - rt) * V - (b * rt + b * b * Pk - a / st)) * V - a * b / st


def _mrk_volume(Pk, T, p: CorkParams):
    """MRK volume (kJ/kbar/mol) above Tc, where the cubic has one real root: Newton from the
    gas side V = RT/P + b (above the root, where the cubic is increasing and convex, so the
    iterates fall monotonically onto it), then one Newton step with the converged volume under
    stop_gradient, which keeps the value and gives the exact first derivatives (implicit
    function theorem) instead of differentiating the iterations."""
    a, b = _mrk_a(T, p), p.b
    dfdv = jax.grad(lambda v, pk, t, aa: jnp.sum(_mrk_cubic(v, pk, t, aa, b)))
    Ps, Ts, As = jax.lax.stop_gradient((Pk, T, a))

    def step(_, v):
        return v - _mrk_cubic(v, Ps, Ts, As, b) / dfdv(v, Ps, Ts, As)

    v0 = _R_KJ * Ts / Ps + b
    vs = jax.lax.stop_gradient(jax.lax.fori_loop(0, _MRK_ITER, step, v0))
    return vs - _mrk_cubic(vs, Pk, T, a, b) / jax.lax.stop_gradient(dfdv(vs, Ps, Ts, As))


def _cork_parts(P, T, p: CorkParams):
    P = jnp.broadcast_to(jnp.asarray(P, dtype=jnp.float64), p.b.shape)
    Pk = P * 1e-8  # Pa -> kbar
    T = jnp.broadcast_to(jnp.asarray(T, dtype=jnp.float64), p.b.shape)
    V = _mrk_volume(Pk, T, p)
    # the virial terms act above P0 only; (P - P0)^gamma through a safe power, so that the
    # derivatives at and below P0 are 0, not 0 x inf. P - P0 in Pa: exactly 0 at P = P0 (the
    # gamma = 1/4 term is steep there: a rounding residue of 4e-16 kbar would add 1e-10 m^3/mol)
    dp = (jnp.maximum(P - p.P0 * 1e8, 0.0) * 1e-8)[:, None]
    pos = dp > 0.0
    k = p.virial[:, :, 0] + p.virial[:, :, 1] * T[:, None]
    gamma = p.virial[:, :, 2]
    power = jnp.where(pos, jnp.where(pos, dp, 1.0) ** gamma, 0.0)
    v_virial = jnp.sum(k * power, axis=1)  # kJ/kbar/mol
    int_virial = jnp.sum(k * dp * power / (gamma + 1.0), axis=1)  # int_P0^P V_virial dP, kJ/mol
    return Pk, T, V, v_virial, int_virial


def cork_ln_fugacity_coefficient(P, T, p: CorkParams):
    """ln phi of the CORK fluid (Holland & Powell 1991, eqs 4-9 and A.2): the MRK part
    Z - 1 - ln(Z - B) - a/(b R T^1.5) ln(1 + b/V) (Z = PV/RT, B = bP/RT) plus the virial part
    int_P0^P V_virial dP / RT above P0. NaN below Tc (see :class:`CorkParams`)."""
    Pk, T, V, _, int_virial = _cork_parts(P, T, p)
    rt = _R_KJ * T
    a, b = _mrk_a(T, p), p.b
    Z = Pk * V / rt
    ln_phi = Z - 1.0 - jnp.log(Z - b * Pk / rt) - a / (b * rt * jnp.sqrt(T)) * jnp.log1p(b / V) + int_virial / rt
    return jnp.where(T >= p.Tc, ln_phi, jnp.nan)


def cork_volume(P, T, p: CorkParams):
    """CORK molar volume (m^3/mol): V_MRK + V_virial (Holland & Powell 1991 eq. 9, 1998). NaN below Tc."""
    Pk, T, V, v_virial, _ = _cork_parts(P, T, p)
    return jnp.where(T >= p.Tc, (V + v_virial) * 1e-5, jnp.nan)  # kJ/kbar = 1e-5 m^3


def cork_gibbs(P, T, p: CorkParams) -> Float[Array, " k"]:
    """G(P, T) of CORK fluid end-members (J/mol): the ideal gas at 1 bar (H0, S0, Cp) plus
    RT ln f = RT ln(phi P / 1 bar) (the ds62 convention for H2O and CO2)."""
    T = jnp.asarray(T, dtype=jnp.float64)
    g0 = p.H0 + cp_enthalpy(T, p.cp) - T * (p.S0 + cp_entropy(T, p.cp))
    return g0 + R_GAS * T * (jnp.log(jnp.asarray(P, dtype=jnp.float64) / P_REF) + cork_ln_fugacity_coefficient(P, T, p))
