"""The positive-definite check, factor and repair of a covariance matrix (every optimizer
factors Σ once here and reuses the factor), and the Ledoit-Wolf ridge certificate that
lets a large Σ skip the factorization.
"""

from __future__ import annotations

import numpy as np
import structlog

from strategies.base import StrategyError

# A covariance whose smallest Cholesky pivot² is below this fraction of its mean variance
# is treated as singular and repaired (eigenvalues clipped to the same floor).
PSD_RELATIVE_FLOOR = 1e-10
# Diagonal loading tried first by the repair, in units of that floor.
LOADING_FLOORS = 2.0
log = structlog.get_logger("strategies")


def repair_covariance(cov: np.ndarray, symbols: list[str] | None = None) -> np.ndarray:
    """Return ``cov`` if it is symmetric positive definite, else a repaired copy (see
    ``factor_covariance``)."""
    return factor_covariance(cov, symbols)[0]


def factor_covariance(cov: np.ndarray, symbols: list[str] | None = None,
                      gram: bool = False, singular: bool = False,
                      ill_factor: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(Σ, L): ``cov`` itself if symmetric positive definite, else a repaired copy, and the
    lower Cholesky factor of the returned matrix (the optimizers reuse it).

    Check: symmetric to 1e-12 relative, and a Cholesky factorization whose smallest
    pivot² ≥ PSD_RELATIVE_FLOOR × mean variance. Repair (logged ``covariance_repaired``,
    naming up to 10 ``symbols`` if given): symmetrize, then add LOADING_FLOORS × floor to
    the diagonal if that passes the check (a PSD-up-to-rounding matrix, e.g. a sample
    covariance with T < N or duplicated assets), else clip eigenvalues at the floor
    (Higham 1988's nearest-PSD projection in the Frobenius norm, plus the floor). When
    the check's factorization ran to the end with a small pivot, the loading goes on the
    diagonal from that pivot on only, and just the trailing block is factored again
    (``_trailing_loaded``: the leading assets' factor is already the right one).
    ``gram``: ``cov`` is a scaled Gram matrix XᵀX made by the estimators (syrk output,
    exactly symmetric; finite when its diagonal is, by Cauchy-Schwarz) or a matrix derived
    from one that is exactly symmetric too (Black-Litterman's Σ_BL): the two full scans
    that check a caller's matrix are skipped, and the repair may load its diagonal in
    place. ``singular``: the caller knows Σ is singular (a Gram matrix of fewer centred
    rows than columns): the repair starts at once, without a Cholesky attempt that must
    fail. ``ill_factor`` False: the caller uses a factor of an ill-conditioned Σ only for
    ``qp.ill_conditioned`` (the optimizers: such a Σ goes to their regularized start); when
    the trailing loading is certified to pass the check and to leave Σ ill-conditioned
    (``_loading_certified_ill``), its trailing block is not factored again, and the factor
    returned is the check's, of Σ before the loading (the same ``ill_conditioned``
    verdict; ~0.6 ms of a near-singular 500-asset call).
    """
    from scipy.linalg import LinAlgError  # ~0.2 s: not for the fixed-weight CLI path

    from strategies.free_set import cholesky_lower

    cov = np.asarray(cov, dtype=float)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise StrategyError(f"covariance must be square, got shape {cov.shape}")
    diag = cov.diagonal()  # a view (np.diag's wrapper costs ~1 µs a call)
    if not (np.isfinite(diag).all() if gram else np.isfinite(cov).all()):
        raise StrategyError("covariance has non-finite entries (NaN or inf in the returns?)")
    scale = float(np.abs(diag).sum()) / len(cov)  # np.mean's bits, without its ~10 µs
    if scale <= 0.0:
        raise StrategyError("covariance is zero: every asset has constant prices in the window")
    floor = PSD_RELATIVE_FLOOR * scale
    exactly_symmetric = gram or np.array_equal(cov, cov.T)
    loaded = None
    if not singular and (exactly_symmetric
                         or float(np.max(np.abs(cov - cov.T))) <= 1e-12 * scale):
        try:  # Σ's transpose is Σ: handed over in LAPACK's column order, no reordering copy
            chol = cholesky_lower(cov.T if exactly_symmetric else cov, clean=True)
        except LinAlgError:
            chol = None
        if chol is not None:
            if float(chol.diagonal().min()) ** 2 >= floor:
                return cov, chol
            loaded = _trailing_loaded(cov, chol, floor, in_place=gram,
                                      factor=ill_factor)
    sym = cov if exactly_symmetric else 0.5 * (cov + cov.T)  # the same bits when symmetric
    if loaded is None:
        loaded = _diagonally_loaded(sym, floor)
    if loaded is not None:
        log.warning("covariance_repaired", reason="not symmetric positive definite",
                    method="diagonal_loading", shift=LOADING_FLOORS * floor, floor=floor,
                    n_assets=len(sym), symbols=_first_ten(symbols),
                    hint="use covariance='ledoit_wolf' or a longer lookback_days")
        return loaded
    values, vectors = np.linalg.eigh(sym)
    log.warning("covariance_repaired", reason="not symmetric positive definite",
                method="eigenvalue_clipping",
                min_eigenvalue=float(values[0]), floor=floor, n_assets=len(values),
                clipped=int(np.sum(values < floor)),
                symbols=_first_ten(symbols),
                hint="use covariance='ledoit_wolf' or a longer lookback_days")
    repaired = (vectors * np.maximum(values, floor)) @ vectors.T
    repaired = 0.5 * (repaired + repaired.T)
    return repaired, cholesky_lower(repaired, clean=True)


def _first_ten(symbols: list[str] | None) -> list[str] | None:
    """Up to 10 symbols for a log line (slicing first: a pandas Index iterates slowly)."""
    return None if symbols is None else [str(x) for x in symbols[:10]]


def _trailing_loaded(cov: np.ndarray, chol: np.ndarray, floor: float, in_place: bool,
                     factor: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    """(Σ + sD, L') with D = diag(0, …, 0, 1, …, 1) from the first pivot k below the floor
    on, s = LOADING_FLOORS × floor, when that passes the PD check, else None. ``chol`` is
    Σ's complete factor: its first k columns stay, and the trailing Schur complement
    Σ₂₂ − L₂₁L₂₁ᵀ = L₂₂L₂₂ᵀ (whichever product is cheaper) plus sI is factored again —
    a (N−k)-sized Cholesky instead of a second N-sized one (Golub & Van Loan 2013, §4.2).
    ``in_place``: ``cov`` and ``chol`` are the caller's own to overwrite. ``factor`` False:
    when ``_loading_certified_ill``, (Σ + sD, ``chol`` unchanged) without the refactor."""
    from scipy.linalg import LinAlgError

    from strategies.free_set import cholesky_lower

    n = len(cov)
    k = int(np.argmax(np.diag(chol) ** 2 < floor))
    shift = LOADING_FLOORS * floor
    if not factor and _loading_certified_ill(chol, k, floor):
        loaded = cov if in_place else cov.copy()
        loaded.flat[k * (n + 1):: n + 1] += shift
        return loaded, chol
    if 6 * k <= n - k:  # Σ₂₂ − L₂₁L₂₁ᵀ: 2(n−k)²k flops, fewer than the tail's (n−k)³/3
        lead = chol[k:, :k]
        schur = cov[k:, k:] - lead @ lead.T
    else:
        schur = _lower_gram(chol[k:, k:])
    schur.flat[:: n - k + 1] += shift
    try:
        corner = cholesky_lower(schur, clean=True, overwrite=True)
    except LinAlgError:
        return None
    if float(np.min(np.diag(corner))) ** 2 < floor:
        return None
    loaded = cov if in_place else cov.copy()
    loaded.flat[k * (n + 1):: n + 1] += shift
    chol[k:, k:] = corner
    return loaded, chol


def _loading_certified_ill(chol: np.ndarray, k: int, floor: float) -> bool:
    """True when ``_trailing_loaded``'s check provably passes and its factor would be
    ``qp.ill_conditioned``, from Σ's complete factor ``chol`` (upper triangle zero) whose
    first pivot² below ``floor`` is at k — so the refactor can be skipped.

    Passes: in the lauum route (6k > m, m = n − k) the refactored matrix is
    A = fl(L₂₂L₂₂ᵀ) + sI with s = LOADING_FLOORS × floor; L₂₂L₂₂ᵀ ⪰ 0, and the rounding
    of the product, of the diagonal shift and the Cholesky's backward error together stay
    below 40·m^1.5·u·(‖L₂₂‖²_F + m·s) in the 2-norm (Higham 2002, Thms 3.5, 10.3 and
    10.7: the factorization then completes), so every computed pivot² is
    ≥ s − that ≥ 1.01 × floor. Ill-conditioned: the loaded factor's pivot k is
    √(l_kk² + s) < √(3·floor) while the leading pivots are Σ's own; if 3.03·floor is below
    ILL_CONDITIONED_PIVOT_RATIO × the largest leading pivot², the pivot spread exceeds
    the ratio (and Σ's own factor, whose pivot k is smaller still, says so too)."""
    from strategies.qp import ILL_CONDITIONED_PIVOT_RATIO

    n = len(chol)
    m = n - k
    if k == 0 or 6 * k <= m:
        return False
    tail = chol[k:, k:]
    shift = LOADING_FLOORS * floor
    # ‖L₂₂‖²_F by einsum: the block is a strided view, which np.vdot would first copy
    # into C order (~0.6 ms at m = 250, against ~25 µs)
    rounding = 40.0 * m**1.5 * float(np.finfo(float).eps / 2) * (
        float(np.einsum("ij,ij->", tail, tail)) + m * shift)
    lead = float(np.max(np.diag(chol)[:k]))
    return bool(shift - rounding >= 1.01 * floor
                and 3.03 * floor < ILL_CONDITIONED_PIVOT_RATIO * lead * lead)


def _lower_gram(tail: np.ndarray) -> np.ndarray:
    """A matrix whose lower triangle is tail·tailᵀ (``tail`` lower triangular, its upper
    triangle zero), in (n−k)³/3 flops: LAPACK's lauum forms UUᵀ of an upper-triangular
    U, and reversing both index orders turns the lower ``tail`` into such a U and UUᵀ back
    into tail·tailᵀ. The strict upper triangle is left zero (the Cholesky reads only the
    lower one)."""
    from scipy.linalg.lapack import dlauum

    product, info = dlauum(np.asfortranarray(tail[::-1, ::-1]), lower=0, overwrite_c=1)
    if info != 0:
        raise ValueError(f"illegal value in argument {-info} of lauum")
    return np.asfortranarray(product[::-1, ::-1])


def _diagonally_loaded(sym: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(Σ + sI, L) with s = LOADING_FLOORS × floor when that passes the PD check, else None.

    A sample covariance is PSD up to rounding, so its smallest eigenvalues sit at ~0 and a
    shift of a few floors (a 2e-10 relative change) repairs it with one Cholesky instead of
    an eigendecomposition (~2 ms instead of ~50 ms at N = 500); a truly indefinite input
    fails the check and gets the eigenvalue clipping."""
    from scipy.linalg import LinAlgError

    from strategies.free_set import cholesky_lower

    loaded = sym.copy()
    loaded.flat[:: len(sym) + 1] += LOADING_FLOORS * floor
    try:
        chol = cholesky_lower(loaded, clean=True)
    except LinAlgError:
        return None
    if float(np.min(np.diag(chol))) ** 2 < floor:
        return None
    return loaded, chol


def ridge_certifies(cov: np.ndarray, ridge: float, n_obs: int) -> bool:
    """True when Σ = (computed Gram of ``n_obs`` rows) + ridge·I is provably positive
    definite and well conditioned without factoring it: the Gram's rounding error has
    spectral norm ≤ γ_T·tr(Σ) (Higham 2002, §3.5; ‖E‖₂ ≤ γ_T‖|X|ᵀ|X|‖₂ ≤ γ_T·tr), so
    λ_min ≥ ridge − that, which must clear the repair floor and keep the pivot spread
    under ``qp.ILL_CONDITIONED_PIVOT_RATIO`` (1e-6 of the largest variance here)."""
    return bool(np.isfinite(cov).all()) and ridge_certifies_diagonal(np.diag(cov), ridge, n_obs)


def ridge_certifies_diagonal(diag: np.ndarray, ridge: float, n_obs: int) -> bool:
    """``ridge_certifies`` from Σ's diagonal (for a Σ = ridge·I + VᵀV kept in factored
    form, whose exact Gram VᵀV is PSD: the same bound holds)."""
    if not np.isfinite(diag).all() or float(np.min(diag)) <= 0.0:
        return False
    trace = float(np.sum(diag))
    rounding = 2.0 * (n_obs + 4) * np.finfo(float).eps * trace
    needed = max(PSD_RELATIVE_FLOOR * trace / len(diag), 1e-6 * float(np.max(diag)))
    return bool(ridge - rounding >= needed)
