"""Tuning constants, in one place, each with the measurement that chose it.

Measured on the project's 2-core machine (1M x 16 rows, K=8, full covariance unless said),
single-threaded BLAS in the workers; see the README's Performance section.
"""

from __future__ import annotations

# Rows per kernel chunk: the (K*d, rows) temporaries of a chunk stay near this many float64
# elements (2 MB, inside L2/L3), but never fewer than MIN_CHUNK_ROWS rows nor more than
# MAX_CHUNK_ROWS.  Chunks of >= 512 rows made the full E-step 14% faster at d=16 and
# 13-25% faster at d=100 than 256-row chunks (GEMMs long enough to run near peak).
# float32 full-covariance kernels take FLOAT32_PRODUCTS_CHUNK_FACTOR times these (below).
CHUNK_ELEMENTS = 1 << 18
MIN_CHUNK_ROWS = 512
MAX_CHUNK_ROWS = 8192

# A responsibility below exp(-200) of its row's largest one is flushed to exactly 0.  It
# changes no sum in float64, but such values times small products x_i x_j are subnormal
# numbers inside the GEMMs, which made them up to 10x slower on well separated data.
FLUSH_BELOW = -200.0

# float32 (the dtype Param): the smallest normal float32 is exp(-87.3), so the flush is at
# exp(-60) -- a responsibility that small changes no float32 sum either.
FLOAT32_FLUSH_BELOW = -60.0

# float32 blocks: features and weights beyond 1e30 are invalid rows (the stored blocks hold
# x - ref, and float32 overflows at 3.4e38); a slice whose coordinates about the fit's centre
# exceed 1e15 is computed in float64 (products up to 1e30; their sums over a slice of at most
# 4 x 8192 rows, FLOAT32_PRODUCTS_CHUNK_FACTOR x MAX_CHUNK_ROWS, with weights scaled to
# about 1, stay below 5e34, far from float32's overflow); a mixture whose density
# coefficients (precisions, P mu, mu^T P mu) leave (1e-30, 1e30) in magnitude -- features of
# spread below ~1e-15 or above ~1e15 -- runs its E-step in float64.
FLOAT32_MAX_VALUE = 1e30
FLOAT32_MAX_ABS = 1e15
FLOAT32_COEFFICIENT_RANGE = (1e-30, 1e30)

# Up to this dimension full covariances use the row-wise products x_i x_j (i <= j): the
# E-step's Mahalanobis terms are one GEMM on them (the expanded form, spark_em.core.densities)
# and the scatter a second; above it the E-step takes the differences x - mu and the
# scatter is one syrk per component.  K=8, 500k rows, one core, seconds (products / exact):
# d=16 0.127 / 0.167, d=20 0.182 / 0.218, d=24 0.253 / 0.277, d=28 0.337 / 0.340,
# d=32 0.498 / 0.434, d=48 1.05 / 0.78.
PRODUCTS_MAX_D = 28

# The sample search (initMode="sample-em") stops a start when its change in mean
# log-likelihood per sample row falls below a tenth of the fit's tol (with the fit's own tol,
# starts stopped on the plateau the fit then stopped on too: 0.055 nats/row below the
# optimum on init_benchmark's k=4 d=4 set, 0.0005 with a tenth), but never below
# SEARCH_MIN_TOL, a tenth of the default tol: the start needs the optimum's basin, not the
# fit's precision.  Without the floor a fit with tol=0 (a fixed number of iterations, as
# the benchmarks run) made every start run the whole race, 260 sample iterations: 2.6 s at
# 1M x 16, K=8, full and about 70 s at 200k x 100, K=20, against 50 and 33 iterations
# (0.55 s and 12 s, one BLAS thread) at 1e-4.
SEARCH_TOL_FACTOR = 0.1
SEARCH_MIN_TOL = 1e-4

# The race's best start is then polished on the sample: EM until its change falls below a
# thousandth of the fit's tol (never below POLISH_MIN_TOL) or POLISH_MAX_ITER more
# iterations.  EM on the data stops at the fit's tol, and where it converges slowly (the
# change per iteration shrinks by a factor near 1) it stopped well short of an optimum it
# was already in the basin of: on init_benchmark's k=3 d=2 set 0.0018-0.0023 nats/row, and
# up to 0.0018 on k=4 d=4; from a start polished this way at most 0.00075 and 0.0003
# (bench-results/init-quality-polish.json; the polish ran 101-200 and 23-44 iterations).
POLISH_TOL_FACTOR = 1e-3
POLISH_MIN_TOL = 1e-6
POLISH_MAX_ITER = 200


# The search makes its starts, and runs each rung of its race, this many starts at a time on
# the driver's threads (numpy's GEMMs release the GIL); the start found is the same bit for
# bit.  One BLAS thread each (spark_em.engine.em): 0.54 -> 0.45 s at K=8, d=16, full and
# 9.7 -> 6.0 s at K=20, d=100 (10,000 sample rows, 2 cores).  Only for a sample of at least
# SEARCH_THREADS_MIN_WORK rows x k x d: below it the threads cost more than they give
# (600 x 2, k=3: 139 -> 219 ms; 10,000 x 4, k=4: 99 -> 120 ms; even at 320k-640k).
SEARCH_THREADS = 2
SEARCH_THREADS_MIN_WORK = 1_000_000

# The race's E-steps run in float32 (the kernel of dtype="float32": rows centred in float64,
# statistics summed into float64, the M-step in float64), whatever the fit's dtype; the
# polish runs in float64.  The race only needs the optimum's basin, and the polish from the
# race's winner reaches the same start: on the bench's data (1M x 16, K=8), the same start
# bit for bit on 6 samples.  10,000 sample rows, 2 threads: 0.24 -> 0.19 s at K=8, d=16,
# full; 0.15 -> 0.13 s diag; at 200k x 100, K=20, full the bound below keeps the race in
# float64 (4.9 s; 3.2 s in float32 there, the same start within 4e-10 relative).
SEARCH_RACE_DTYPE = "float32"

# ... but only where float32 resolves the components: float32's eps x the largest squared
# norm of the sample's centred rows x the largest squared Frobenius norm of the precisions'
# Cholesky factors must stay below this.  It bounds, relative to a component's spread in
# every direction (whitened), both the error of second moments summed in float32 (their
# cancellation: a broad component shrinking onto a tight cluster far from the centre,
# nearly collinear features with large values) and, far below it, float32's rounding of
# the rows themselves.  Checked before each E-step (the parameters it is taken under) and
# after a float32 one (the new parameters; an M-step that fails, or lands beyond the bound,
# is taken again from a float64 E-step).  The bench's data at the sample's optimum: 2.1e-3
# at 1M x 16, K=8, full; two clusters 1e6 apart with spread 1e-2: 1e9; a feature of +-1000
# and two copies of it with noise 0.7: about 4 (the float32 race failed there on singular
# covariances, where the float64 one succeeds).
SEARCH_FLOAT32_BOUND = 1e-2


def search_tolerances(tol: float) -> tuple[float, float]:
    """The sample search's ``(race tol, polish tol)`` for a fit of ``tol``."""
    return max(tol * SEARCH_TOL_FACTOR, SEARCH_MIN_TOL), max(
        tol * POLISH_TOL_FACTOR, POLISH_MIN_TOL
    )


# Rows a task handles at a time from its store (one local-file read, one merged chunk of
# cached block rows, one Parquet record batch): about 8 MB of float64 features.  Smaller
# units cost per-call overhead; larger ones only memory.
UNIT_BYTES = 8 << 20

# A work unit of the local-file store never has fewer rows than this, and each task gets
# at least UNITS_PER_TASK units so that the tasks of a pass stay balanced.
MIN_UNIT_ROWS = 256
UNITS_PER_TASK = 4

# Block rows stored in Spark's cache hold at most this many bytes of features.  A cached
# row is then an ordinary JVM object (G1 treats objects of half a region, 512 KiB on heaps
# under 2 GiB, as "humongous"), so data 3.6x larger than a 1 GiB heap was cached, spilled
# and read back without an OutOfMemoryError (30M x 16 rows: 185 s fit).
STORED_BLOCK_BYTES = 256 << 10

# Block rows per Arrow batch when a pass reads Spark's cache: about UNIT_BYTES.  Spark's
# default (10,000 rows) made one Arrow batch of a whole partition, built in the JVM before
# the Python worker could start; batches of 32 block rows stream while the worker computes
# (1M x 16, K=8: the read share of a pass fell from 0.37 s to 0.15 s, summed over tasks).
BLOCK_ROWS_PER_ARROW_BATCH = max(1, UNIT_BYTES // STORED_BLOCK_BYTES)

# Tasks per core for passes over Spark's cache: input partitions are merged (coalesced)
# into at most this many tasks per core, so statistics rows and the reduce do not grow
# with the input's partition count (500 input partitions at d=64, K=32 made a pass 29x
# slower than 4 partitions before this bound).
TASKS_PER_CORE = 2


# float32 slices of the full-covariance E-step (blocks of the products x_i x_j) hold this
# many times the rows of float64 ones: the GEMMs take half the time there, so the slice's
# fixed cost (some 30 numpy calls) weighs twice as much.  One core, float32 kernel,
# seconds at 1, 2 and 4 times the rows: full d=16 K=8 (300k rows) 0.061 / 0.054 / 0.049,
# d=24 K=8 0.127 / 0.109 / 0.101, d=16 K=32 0.148 / 0.129 / 0.124; diag, spherical and
# tied were slower at 2 and 4 (d=16 K=8: 0.020 / 0.025 / 0.021), and float64 full gained
# under 5 % at 2 (0.098 / 0.097 at d=16).
FLOAT32_PRODUCTS_CHUNK_FACTOR = 4


def chunk_rows(width: int, factor: int = 1) -> int:
    """Rows per kernel chunk for temporaries of ``width`` values per row (``factor`` times
    as many, within ``factor`` times the bounds)."""
    rows = factor * CHUNK_ELEMENTS // max(width, 1)
    return int(min(factor * MAX_CHUNK_ROWS, max(factor * MIN_CHUNK_ROWS, rows)))


def unit_rows(d: int) -> int:
    """Rows of d float64 features in one unit of work (about UNIT_BYTES)."""
    return max(1, UNIT_BYTES // (8 * d))


# A fit or update with segmentCol E-steps at most this many segments with per-segment
# passes (local block files: one file per task and segment; Spark's cache: block rows of one
# segment -- more segments, more and smaller files, blocks and chunks); beyond it the blocks
# hold the rows without their keys and the split is one more read of the input.
MAX_KEYED_SEGMENTS = 32
