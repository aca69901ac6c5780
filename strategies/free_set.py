"""Free-set solves of the box-and-budget QP: the equality-constrained problem with a
given set of bounds held, by the cheapest of three exact ways.

1. The free set is the one last factored (a warm start's first iteration, a frontier
   piece after its QP): reuse that Cholesky factor of Σ on the free set.
2. Few bounds are active and a Cholesky factor of the whole Σ is at hand: the
   range-space method below.
3. Otherwise factor Σ on the free set (|F|³/3 flops; cheap when few assets are free).

The range-space method (from one Cholesky factor of the whole Σ):

With the bounds in A held (w_A = b_A) and the budget aᵀw = r (a = 1, the full-investment
row, except in the max-Sharpe QP), the optimum of ½wᵀΣw − cᵀw is w = Σ⁻¹(c + Hλ),
H = [a | E_A], where the multipliers λ = (ν, z_A) solve
the small system (HᵀΣ⁻¹H)λ = (r, b_A) − HᵀΣ⁻¹c (the range-space method, Nocedal &
Wright 2006, §16.2; Gill, Murray, Saunders & Wright's Schur-complement updates of the KKT
system). With Σ = LLᵀ and M = L⁻¹H, HᵀΣ⁻¹H = MᵀM: the columns L⁻¹e_j of bounds ever
active are computed once (one triangular solve each) and kept with their Gram matrix, so
when one bound enters or leaves, the next solve costs two triangular solves and an
|A|-sized factorization, not a new Cholesky of Σ on the free set. The active-set methods
use it while few bounds are active (a factor of the free set is cheaper otherwise), and
only for a well-conditioned Σ (the callers check the pivots first).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import LinAlgError
from scipy.linalg.lapack import dpotrf, dpotrs, dtpqrt, dtrtrs

from strategies.base import StrategyError

# Below this share of non-zero weights, Σw reads only the support's rows of Σ.
SPARSE_GRADIENT_SHARE = 0.5
# A free-set solve cheaper than this many flops factors at once: the range space's fixed
# costs (its set-up, cost estimate and a dozen small array operations, ~30 µs) exceed
# the whole factor-and-solve (a 60-asset Cholesky is ~10 µs).
RANGE_SPACE_MIN_FLOPS = 1e5
# ``lower_unit_columns`` splits its rows into at most this many groups of at least this
# many (each group copies its trailing triangle of L once).
UNIT_COLUMN_GROUPS = 4
UNIT_COLUMNS_PER_GROUP = 16


class RangeSpace:
    """A lower Cholesky factor L of Σ (+ ridge·I) on anchor assets P — all assets, or a
    free set factored earlier — with the cached columns L⁻¹e_j (see module doc). Assets
    joining the free set border the factor (L grows by the rows [Bᵀ C], B = L⁻¹Σ_PN,
    CCᵀ = Σ_NN − BᵀB: |P|²·|N| flops, Golub & Van Loan 2013 §4.2); assets leaving it
    are held by the range-space equations, so neither costs a new factorization."""

    def __init__(self, cov: np.ndarray, index: np.ndarray, chol: np.ndarray,
                 budget_row: np.ndarray, ridge: float = 0.0) -> None:
        self.cov, self.index, self.chol = cov, index, chol
        self.budget_row, self.ridge = budget_row, ridge
        self.local = np.full(len(cov), -1)
        self.local[index] = np.arange(len(index))
        self.row = solve_lower(chol, budget_row[index])
        self.position = np.full(len(index), -1)
        self.columns = np.empty((len(index), 0))
        self.gram = np.empty((0, 0))
        self.row_dot = np.empty(0)
        #: The last linear terms (all assets, n × K) and L⁻¹ of them on the anchor: the
        #: iterations of one QP repeat them, and bordering extends the projection.
        self.lin_seen: np.ndarray | None = None
        self.projected: np.ndarray | None = None

    def cost(self, free: np.ndarray) -> float:
        """Flops of a solve on ``free`` (bordering, new columns and the small system)."""
        m = len(self.index)
        joining = int(np.count_nonzero(self.local[free] < 0))
        size = m + joining
        is_free = np.zeros(m, bool)
        is_free[self.local[free][self.local[free] >= 0]] = True
        held = int(m - np.count_nonzero(is_free))
        new = int(np.count_nonzero(self.position[~is_free] < 0))
        return float(m * m * joining + joining**3 / 3 + size * size * (new + 2)
                     + size * held * (held + 2))

    def solve(self, lin: np.ndarray, budgets: np.ndarray, held: np.ndarray,
              free: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(W, ν, Z) as ``FreeSetSolver.solve`` for the free assets ``free`` (``held`` is 0
        on them); Z (n × K) = Σw − c − νa, the held bounds' multipliers, when every held
        asset is in the anchor (they are the range-space multipliers λ_A), else None."""
        joining = free[self.local[free] < 0]
        if joining.size:
            self._border(joining)
        is_free = np.zeros(len(self.index), bool)
        is_free[self.local[free]] = True
        kept = np.flatnonzero(~is_free)  # anchor assets held at a bound (local positions)
        outside = np.flatnonzero((self.local < 0) & held.any(axis=1))
        budgets_p = budgets
        if outside.size:  # held assets beyond the anchor enter through c and the budget
            lin_p = lin[self.index] - (held[outside].T @ self.cov[outside]).T[self.index]
            budgets_p = budgets - self.budget_row[outside] @ held[outside]
            projected = solve_lower(self.chol, lin_p)
        else:
            projected = self._projection(lin)
        w_p, lam = self._solve_local(projected, budgets_p, kept, held[self.index[kept]])
        w = held.copy()
        w[self.index] = w_p
        z = None
        if len(self.index) == len(self.local):  # every held asset is in the anchor
            z = np.zeros_like(w)
            z[self.index[kept]] = lam[1:]
        return w, lam[0], z

    def _projection(self, lin: np.ndarray) -> np.ndarray:
        """L⁻¹ lin[anchor], kept for the next solve with the same ``lin``."""
        if self.lin_seen is None or not np.array_equal(lin, self.lin_seen):
            self.lin_seen = lin.copy()
            self.projected = solve_lower(self.chol, lin[self.index])
        assert self.projected is not None
        return self.projected

    def _border(self, joining: np.ndarray) -> None:
        m, j = len(self.index), joining.size
        # Σ_PN = (Σ_NP)ᵀ: N's rows are contiguous (no copy of P's full rows).
        cross = solve_lower(self.chol, self.cov.take(joining, 0).take(self.index, 1).T)
        schur = self.cov.take(joining, 0).take(joining, 1) - cross.T @ cross
        if self.ridge:
            schur.flat[:: j + 1] += self.ridge
        corner = factor_matrix(schur)
        grown = np.zeros((m + j, m + j))
        grown[:m, :m], grown[m:, :m], grown[m:, m:] = self.chol, cross.T, corner
        row_new = solve_lower(corner, self.budget_row[joining] - cross.T @ self.row)
        tail = -solve_lower(corner, cross.T @ self.columns)
        self.gram = self.gram + tail.T @ tail
        self.row_dot = self.row_dot + tail.T @ row_new
        self.columns = np.vstack([self.columns, tail])
        self.row = np.concatenate([self.row, row_new])
        if self.lin_seen is not None and self.projected is not None:  # extend L⁻¹ lin
            lin_new = self.lin_seen[joining] - cross.T @ self.projected
            self.projected = np.concatenate([self.projected, solve_lower(
                corner, lin_new)])
        self.chol, self.index = grown, np.concatenate([self.index, joining])
        self.local[joining] = m + np.arange(j)
        self.position = np.concatenate([self.position, np.full(j, -1)])

    def _ensure(self, kept: np.ndarray) -> np.ndarray:
        missing = kept[self.position[kept] < 0]
        if missing.size:
            new = lower_unit_columns(self.chol, missing)
            cross = self.columns.T @ new
            old, added = self.gram.shape[0], missing.size
            gram = np.empty((old + added, old + added))  # np.block's layout, without its checks
            gram[:old, :old], gram[:old, old:] = self.gram, cross
            gram[old:, :old], gram[old:, old:] = cross.T, new.T @ new
            self.gram = gram
            self.row_dot = np.concatenate([self.row_dot, new.T @ self.row])
            self.position[missing] = self.columns.shape[1] + np.arange(missing.size)
            self.columns = np.hstack([self.columns, new])
        return self.position[kept]

    def _solve_local(self, projected: np.ndarray, budgets: np.ndarray, kept: np.ndarray,
                     held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """On the anchor: argmin ½wᵀΣw − lin_kᵀw, aᵀw = budgets[k], w[kept] = held[:, k],
        given ``projected`` = L⁻¹lin; returns (w, λ): λ[0] = ν, λ[1:] the multipliers of
        the held bounds (Σw − lin = aν + E_kept λ[1:])."""
        pos = self._ensure(kept)
        cols = self.columns[:, pos]
        size = 1 + len(kept)
        normal = np.empty((size, size))
        normal[0, 0] = self.row @ self.row
        normal[0, 1:] = normal[1:, 0] = self.row_dot[pos]
        normal[1:, 1:] = self.gram[np.ix_(pos, pos)]
        rhs = np.vstack([budgets[None, :], held]) - np.vstack(
            [self.row @ projected, cols.T @ projected])
        lam = cho_solve_lower(cholesky_lower(normal), rhs)
        v = projected + np.outer(self.row, lam[0]) + cols @ lam[1:]
        w = solve_lower(self.chol, v, trans=True)
        w[kept] = held
        return w, lam


class FreeSetSolver:
    """Solves Σ's equality-constrained problems on active sets for one QP or a frontier
    walk (same Σ throughout), keeping what the next solve can reuse: factors of exact
    free sets seen before, and — for a well-conditioned Σ, signalled by giving ``chol``
    (its factor) — a range space anchored on the whole Σ or on the last free set
    factored, bordered as assets join."""

    def __init__(self, cov: np.ndarray, chol: np.ndarray | None = None,
                 budget_row: np.ndarray | None = None, ridge: float = 0.0) -> None:
        #: The matrix solved with is Σ + ridge·I (``chol`` is its factor); the ridge
        #: regularizes the continuation start of ``qp`` without copying Σ.
        self.cov, self.chol, self.ridge = cov, chol, ridge
        #: a in the budget constraint aᵀw = b (all ones but for the max-Sharpe QP).
        self.budget_row = np.ones(len(cov)) if budget_row is None else budget_row
        self.unit_budget = budget_row is None
        self.space: RangeSpace | None = None
        #: The free set and factor the range space is to be anchored on next, built only
        #: when a solve considers it (most small solves never do).
        self.anchor: tuple[np.ndarray, np.ndarray] | None = None
        self.known: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.factorizations = 0
        #: Σw − c − νa of the last solve (n × K, 0 on free assets) when it came free with
        #: it (range-space multipliers), else None: then ``gradient`` computes it.
        self.last_multipliers: np.ndarray | None = None

    def remember(self, free: np.ndarray, factor: np.ndarray | None, slot: str = "last"
                 ) -> None:
        """A factor of Σ on the free set ``free`` (indices) that a later solve may reuse."""
        if factor is not None:  # (intp: ``_known_factor`` compares the indices' bytes)
            self.known[slot] = (np.asarray(free, dtype=np.intp), factor)

    def gradient(self, w: np.ndarray, lin: np.ndarray) -> np.ndarray:
        """(Σ + ridge·I)w − lin, reading only the rows of w's support when it is sparse
        (Σ symmetric: Σw = Σ_{S,:}ᵀw_S; a long-only optimum holds a fraction of the
        assets, and each full pass over Σ is a memory-bound ~0.1 ms at N = 500)."""
        support = w.nonzero()[0]  # w is 1-D (np.flatnonzero's ravel costs ~0.8 µs)
        if support.size < SPARSE_GRADIENT_SHARE * len(w):
            g = w.take(support, mode="clip") @ self.cov.take(support, 0, mode="clip") - lin
        else:
            g = self.cov @ w - lin
        return g + self.ridge * w if self.ridge else g

    def _range_space(self) -> RangeSpace:
        """The range space, anchored on the last free set factored, else on all of Σ."""
        if self.anchor is not None:
            self.space = RangeSpace(self.cov, *self.anchor, self.budget_row, self.ridge)
            self.anchor = None
        elif self.space is None:
            assert self.chol is not None
            self.space = RangeSpace(self.cov, np.arange(len(self.cov)), self.chol,
                                    self.budget_row, self.ridge)
        return self.space

    def _new_factor(self, free: np.ndarray) -> np.ndarray:
        """Σ's (+ ridge·I) Cholesky factor on the free set, remembered (and the range space's
        next anchor when Σ's own factor is at hand)."""
        self.factorizations += 1
        # mode="clip": the indices are in range, and numpy's bounds check costs ~40 % of a
        # small gather (the values are the same).
        block = self.cov.take(free, 0, mode="clip").take(free, 1, mode="clip")
        if self.ridge:
            block.flat[:: free.size + 1] += self.ridge
        factor = factor_matrix(block)
        self.remember(free, factor)
        if self.chol is not None:  # anchor the range space on this free set
            self.space, self.anchor = None, (free, factor)
        return factor

    def _known_factor(self, free: np.ndarray) -> np.ndarray | None:
        for indices, factor in self.known.values():  # (bytes: np.array_equal costs ~1.7 µs)
            if indices.size == free.size and indices.tobytes() == free.tobytes():
                return factor
        return None

    def solve(self, lin: np.ndarray, budgets: np.ndarray, held: np.ndarray,
              active: np.ndarray, held_zero_on_free: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(W, ν, factor): column k of W (n × K) minimizes ½wᵀΣw − lin[:, k]ᵀw subject to
        aᵀw = budgets[k] and w = held[:, k] where ``active``; ν its budget multiplier
        (NaN when nothing is free); factor = Σ's Cholesky factor on the free set when one
        was used (None on the range-space path). The budget row is ``budget_row``.
        ``held_zero_on_free``: ``held`` is the caller's own and already 0 on the free
        assets, so it becomes W itself (no masked copy)."""
        n, k = lin.shape
        self.last_multipliers = None
        free = (~active).nonzero()[0]
        w = held if held_zero_on_free else np.where(active[:, None], held, 0.0)
        if free.size == 0:
            return w, np.full(k, np.nan), None
        factor = self._known_factor(free)
        if factor is None and self.chol is not None:
            direct = free.size ** 3 / 3.0 + free.size * n * k  # flops of a factor-and-solve
            if direct >= RANGE_SPACE_MIN_FLOPS:
                space = self._range_space()
                if space.cost(free) < direct:
                    w, nu, self.last_multipliers = space.solve(lin, budgets, w, free)
                    return w, nu, None
        if factor is None:
            factor = self._new_factor(free)
        return self.solve_factored(lin, budgets, w, free, active, factor)

    def solve_factored(self, lin: np.ndarray, budgets: np.ndarray, w: np.ndarray,
                       free: np.ndarray, active: np.ndarray, factor: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``solve`` by a factor of Σ on the free set (``factor``, a remembered one, or a new
        one) for a caller that keeps the sets itself (the primal method, one bound change
        per iteration): ``free`` the free indices (non-empty), ``active`` the held mask,
        ``w`` (n × K) the held values with 0 on the free assets, overwritten with the
        answer."""
        k = lin.shape[1]
        if factor is None:
            factor = self._known_factor(free)
        if factor is None:
            factor = self._new_factor(free)
        both = np.empty((free.size, k + 1))  # [c_F − Σ_FA·w_A | a_F]: one solve for both
        if self.unit_budget:  # a_F = 1: a filled column and a slice of ones, no gathers
            row = self.budget_row[:free.size]
            both[:, k] = 1.0
        else:
            row = self.budget_row[free]
            both[:, k] = row
        held_any = np.count_nonzero(w) > 0  # w: the held values, 0 on the free assets
        # take(mode="clip") gathers the same values as fancy indexing at a third of the
        # cost (the indices are in range; no bounds check, no general index machinery).
        lin_free = lin.take(free, 0, mode="clip")
        if held_any:
            act = active.nonzero()[0]
            held_rows = w.take(act, 0, mode="clip").T @ self.cov.take(act, 0, mode="clip")
            both[:, :k] = lin_free - held_rows.T.take(free, 0, mode="clip")  # Σ symmetric
        else:
            both[:, :k] = lin_free
        x = cho_solve_lower(factor, both)
        y = x[:, k]
        spent = budgets - self.budget_row @ w if held_any else budgets  # b − aᵀw_A
        nu = (spent - row @ x[:, :k]) / float(row @ y)
        w[free] = x[:, :k] + y[:, None] * nu
        return w, nu, factor


def lower_unit_columns(chol: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The columns L⁻¹e_r for r in ``rows``. L⁻¹e_r is zero above row r, so the rows are
    taken in a few groups by position and each group solves only the trailing triangle
    from its first row: for rows spread over L's order about half the flops of one solve
    with the whole L (Σ's factor at N = 500: ~1.2 → ~0.6 ms for 120 columns)."""
    m, k = len(chol), rows.size
    groups = max(1, min(UNIT_COLUMN_GROUPS, k // UNIT_COLUMNS_PER_GROUP))
    if groups == 1:
        unit = np.zeros((m, k))
        unit[rows, np.arange(k)] = 1.0
        return solve_lower(chol, unit)
    out = np.zeros((m, k))
    for chunk in np.array_split(np.argsort(rows, kind="stable"), groups):
        start = int(rows[chunk[0]])
        unit = np.zeros((m - start, chunk.size))
        unit[rows[chunk] - start, np.arange(chunk.size)] = 1.0
        out[start:, chunk] = solve_lower(np.asfortranarray(chol[start:, start:]), unit)
    return out


def cholesky_append(factor: np.ndarray, cross: np.ndarray, diagonal: float
                    ) -> np.ndarray | None:
    """The lower Cholesky factor of [[A, b], [bᵀ, d]] from A's (``factor``), b = ``cross``
    and d = ``diagonal``, by bordering: r = L⁻¹b, ρ = √(d − rᵀr) (Golub & Van Loan 2013,
    §4.2): m² flops where a new factor costs m³/3. None when d − rᵀr is not positive
    (the bordered matrix is not positive definite to rounding: factor anew, which says so)."""
    m = len(factor)
    row = solve_lower(factor, cross) if m else np.empty(0)
    pivot2 = diagonal - float(row @ row)
    if not pivot2 > 0.0:
        return None
    grown = np.empty((m + 1, m + 1), order="F")
    grown[:m, :m] = factor  # (the upper triangle is never read: any values do)
    grown[m, :m] = row
    grown[:m, m] = 0.0
    grown[m, m] = np.sqrt(pivot2)
    return grown


def cholesky_delete(factor: np.ndarray, k: int) -> np.ndarray:
    """The lower Cholesky factor of A without row and column k, from A's: rows and
    columns before k keep theirs, and the trailing block is the factor of
    L₃₃L₃₃ᵀ + llᵀ (l = L[k+1:, k]), the rank-one update LAPACK's triangular-pentagonal QR
    (dtpqrt) gives as the R of [L₃₃ᵀ; lᵀ] (Golub & Van Loan 2013, §6.5): (m − k)² flops
    where a new factor costs m³/3. R's rows come out with either sign; each row of
    negative pivot is negated (RᵀR unchanged), so the pivots stay positive."""
    m = len(factor)
    shrunk = np.empty((m - 1, m - 1), order="F")
    shrunk[:k, :k] = factor[:k, :k]
    shrunk[k:, :k] = factor[k + 1:, :k]
    shrunk[:k, k:] = 0.0
    tail = m - k - 1
    if tail:
        # copies (asfortranarray may return a view, which dtpqrt would overwrite)
        upper = np.array(factor[k + 1:, k + 1:].T, order="F")
        spike = np.array(factor[k + 1:, k][None, :], order="F")
        upper, _, _, info = dtpqrt(0, min(tail, 32), upper, spike, overwrite_a=1,
                                   overwrite_b=1)
        if info != 0:
            raise ValueError(f"illegal value in argument {-info} of tpqrt")
        upper *= np.where(upper.diagonal() < 0.0, -1.0, 1.0)[:, None]
        shrunk[k:, k:] = upper.T
    return shrunk


def factor_matrix(matrix: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor, or StrategyError when Σ is not PD on these assets."""
    try:
        return cholesky_lower(matrix)
    except LinAlgError as exc:
        raise StrategyError("covariance is not positive definite on the free assets; "
                            "repair it (covariance_repair.repair_covariance) first") from exc


# scipy.linalg's cho_factor / cho_solve / solve_triangular cost ~10 µs of Python wrappers
# per call (batch dispatch, array-API conversion, checks): most of a small QP's time. These
# call the same LAPACK routines with exactly the arguments scipy 1.17 passes for float64
# arrays (check_finite=False, no overwrite), so the results are the same bits.


def cholesky_lower(matrix: np.ndarray, clean: bool = False,
                   overwrite: bool = False) -> np.ndarray:
    """``cho_factor(matrix, lower=True, check_finite=False)[0]``: the lower factor (its
    upper triangle left as the input's), a Fortran-ordered copy; LinAlgError if not PD.
    ``clean``: the upper triangle zeroed (``scipy.linalg.cholesky``); ``overwrite``: its
    ``overwrite_a``."""
    if matrix.size == 0:
        return np.empty_like(matrix, dtype=float)
    factor, info = dpotrf(matrix, lower=1, clean=int(clean), overwrite_a=int(overwrite))
    if info > 0:
        raise LinAlgError(f"{info}-th leading minor of the array is not positive definite")
    if info < 0:
        raise ValueError(f"illegal value in argument {-info} of potrf")
    return factor


def cho_solve_lower(factor: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``cho_solve((factor, True), rhs, check_finite=False)``: Σx = rhs from Σ's lower
    Cholesky factor."""
    if rhs.size == 0:
        return np.empty_like(rhs, dtype=float)
    x, info = dpotrs(factor, rhs, lower=1, overwrite_b=0)
    if info != 0:
        raise ValueError(f"illegal value in argument {-info} of potrs")
    return x


def solve_lower(chol: np.ndarray, rhs: np.ndarray, trans: bool = False) -> np.ndarray:
    """``solve_triangular(chol, rhs, lower=True, trans="T" if trans else "N",
    check_finite=False)``: L⁻¹rhs or L⁻ᵀrhs, a C-ordered ``chol`` handed to LAPACK as its
    transpose (upper), as scipy does."""
    if rhs.size == 0:
        return np.empty_like(rhs, dtype=float)
    if chol.flags.f_contiguous:
        x, info = dtrtrs(chol, rhs, lower=1, trans=int(trans), unitdiag=0, overwrite_b=0)
    else:
        x, info = dtrtrs(chol.T, rhs, lower=0, trans=int(not trans), unitdiag=0,
                         overwrite_b=0)
    if info > 0:
        raise LinAlgError(f"singular matrix: resolution failed at diagonal {info - 1}")
    if info < 0:
        raise ValueError(f"illegal value in argument {-info} of trtrs")
    return x
