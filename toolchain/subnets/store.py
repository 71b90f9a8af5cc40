"""Nested row-sparse weight store (DRESS): one store, several subnet levels.

A weight of R rows (FULLY_CONNECTED [out, in]: a row per output neuron; CONV_2D
OHWI: a row per output channel over kh*kw*cin, column c = (ky*kw + kx)*cin + ci)
and a per-row importance order (most important first) gives, for levels of
sparsity s_0 < s_1 < ... (0 = dense allowed), per-row entry counts
n_k = max(1, round((1 - s_k) * K)) (every row keeps the same count) and nested
masks: a sparser level's entries are a prefix of a denser one's, per row.

    order = importance_order(w)                      # |w| descending per row
    st = build_store(w_int8, order, (0.5, 0.75, 0.9))
    st.counts            # entries per row at each level, in the given level order
    st.level_mask(k)     # bool [R, K]
    st.nbytes()          # flash bytes of the packed store
    byte_report(st)      # store vs dense int8 vs K separate models

Packed layout (what the C kernels read, `firmware_templates/runtime/sparse.c`):
- entries are grouped by *increment group*: group 0 = the sparsest level's
  entries, group g = the entries a level adds to the next sparser one. Within a
  group, entries are sorted by column (so every level is a prefix of whole
  groups, and a group's columns can be coded relative to 256-column segments);
- `values` int8 [R, N] (N = densest count), per row group after group;
- `cols` uint8 [R, Nc]: the column's low `seg_shift` bits (the whole column when
  K <= 256: one segment); in flash (`c_arrays`) values and columns of the
  explicit entries are interleaved as byte pairs (column, value), so the kernel
  walks one pointer, and the implicit group's values follow as a `tail`;
- `seg_counts` uint8 [R, G, S] (only when K > 256): entries of (row, group) in
  each segment of 2**seg_shift columns; seg_shift = 8, or 7 when a segment's
  explicit entries would not fit a byte count; in flash (`c_arrays`) rows are
  segment-major and the counts cumulative over groups, so a level reads one
  run per segment;
- `group_end` [G]: cumulative entries per row at the end of each group
  (= the level counts, sparsest first);
- `implicit_last`: when the densest level is dense (sparsity 0) and the option is
  on, its group holds every column not in an earlier group, in ascending order;
  the columns (and segment counts) of that group are not stored, so a dense
  level costs K values + the sparser levels' column bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toolchain.ir.graph import IRError


def check_levels(sparsities) -> tuple[float, ...]:
    """Sparsities strictly increasing, each in [0, 1) -> tuple of floats (else IRError)."""
    s = tuple(float(v) for v in sparsities)
    if not s:
        raise IRError("no subnet levels given")
    for v in s:
        if not (0.0 <= v < 1.0):
            raise IRError(f"subnet level sparsity {v} is outside [0, 1)")
    for a, b in zip(s, s[1:]):
        if not b > a:
            raise IRError(f"subnet levels must be strictly increasing: {a} then {b}")
    return s


def level_counts(row_len: int, sparsities) -> np.ndarray:
    """Entries per row at each level: max(1, round((1 - s) * row_len))."""
    s = check_levels(sparsities)
    return np.array([max(1, int(np.floor((1.0 - v) * row_len + 0.5))) for v in s], np.int64)


def as_rows(w: np.ndarray) -> np.ndarray:
    """Weight -> [rows, row_len] view (FC [out, in], CONV_2D OHWI: out x (kh*kw*cin))."""
    w = np.asarray(w)
    return w.reshape(w.shape[0], -1)


def importance_order(w: np.ndarray) -> np.ndarray:
    """Per-row column order by |w| descending (ties: lower column first), int64 [R, K]."""
    r = np.abs(as_rows(w).astype(np.float64))
    return np.argsort(-r, axis=1, kind="stable").astype(np.int64)


def nested_masks(order: np.ndarray, sparsities) -> np.ndarray:
    """bool [L, R, K]: mask of each level (the first n_k columns of each row's order)."""
    order = np.asarray(order, np.int64)
    R, K = order.shape
    counts = level_counts(K, sparsities)
    m = np.zeros((len(counts), R, K), bool)
    rows = np.arange(R)[:, None]
    for k, n in enumerate(counts):
        m[k, rows, order[:, :n]] = True
    return m


@dataclass
class SubnetStore:
    shape: tuple[int, ...]            # original weight shape
    sparsities: tuple[float, ...]     # in the caller's (increasing) order
    counts: np.ndarray                # entries per row per level (same order)
    group_end: np.ndarray             # int32 [G] cumulative counts, sparsest first
    values: np.ndarray                # int8 [R, N]
    cols: np.ndarray                  # uint8 [R, Nc]
    seg_counts: np.ndarray | None     # uint8 [R, G, S] or None (one segment)
    seg_shift: int                    # columns per segment = 2**seg_shift
    implicit_last: bool
    columns: np.ndarray = field(repr=False)   # int64 [R, N]: full column of each entry

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def row_len(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64))

    @property
    def n_max(self) -> int:
        return int(self.values.shape[1])

    @property
    def n_groups(self) -> int:
        return int(self.group_end.size)

    @property
    def n_seg(self) -> int:
        return 1 if self.seg_counts is None else int(self.seg_counts.shape[2])

    def level_entries(self, level: int) -> int:
        return int(self.counts[level])

    def level_groups(self, level: int) -> int:
        """Number of groups a level uses."""
        return int(np.searchsorted(self.group_end, self.counts[level]) + 1)

    def level_mask(self, level: int) -> np.ndarray:
        n = self.level_entries(level)
        m = np.zeros((self.rows, self.row_len), bool)
        m[np.arange(self.rows)[:, None], self.columns[:, :n]] = True
        return m

    def dense(self, level: int) -> np.ndarray:
        """int8 dense-with-zeros weight of a level, in the original shape."""
        n = self.level_entries(level)
        w = np.zeros((self.rows, self.row_len), np.int8)
        w[np.arange(self.rows)[:, None], self.columns[:, :n]] = self.values[:, :n]
        return w.reshape(self.shape)

    def row_sums(self, level: int) -> np.ndarray:
        """int64 [R]: sum of a level's weight values per row."""
        return self.values[:, :self.level_entries(level)].astype(np.int64).sum(axis=1)

    def bias_eff(self, level: int, bias, input_offset: int) -> np.ndarray:
        """int32 [R]: bias + input_offset * row sum (what the kernels take; the
        zero point then costs nothing per entry). bias may be None."""
        b = np.zeros(self.rows, np.int64) if bias is None else np.asarray(bias, np.int64)
        v = b + int(input_offset) * self.row_sums(level)
        return ((v + 2**31) % 2**32 - 2**31).astype(np.int32)

    # -- bytes -------------------------------------------------------------------
    def nbytes(self) -> int:
        """Flash bytes: values + column bytes + segment counts + group ends (int16)."""
        n = self.values.nbytes + self.cols.nbytes + 2 * self.n_groups
        if self.seg_counts is not None:      # flash: [R, S, explicit groups]
            n += self.rows * self.n_seg * (self.n_groups - int(self.implicit_last))
        return int(n)

    def c_arrays(self) -> dict:
        """The arrays the C kernels take (mcu_sparse_store_t), contiguous.

        pairs uint8 [R, Nc, 2]: the explicit entries as (column low bits, int8 value)
        byte pairs (one pointer walks both). With one segment (K <= 256) a row is
        its groups in order. With S > 1 segments a row is segment-major: for each
        segment, its entries of group 0, then group 1, ... (each sorted by column),
        so a level's entries in a segment are a prefix of that segment's block;
        seg_counts uint8 [R, S, Ge] holds the cumulative counts over the Ge explicit
        groups (a level using groups < g takes seg_counts[r, s, g - 1] entries of
        segment s; the block is seg_counts[r, s, Ge - 1] long).
        tail int8 [R, N - Nc]: the implicit (dense) group's values, ascending columns."""
        nc = int(self.cols.shape[1])
        R, S = self.rows, self.n_seg
        ends = self.group_end.astype(np.int64)
        starts = np.concatenate([[0], ends[:-1]])
        ge = self.n_groups - (1 if self.implicit_last else 0)
        order = np.arange(nc)[None, :].repeat(R, 0)
        segc = None
        if S > 1:
            seg = self.columns[:, :nc] >> self.seg_shift
            grp = np.searchsorted(ends, np.arange(nc), side="right")       # group of entry j
            key = seg * (ge + 1) + grp[None, :]
            order = np.argsort(key, axis=1, kind="stable")
            cnt = self.seg_counts.astype(np.int64)[:, :ge, :]               # [R, Ge, S]
            segc = np.cumsum(cnt.transpose(0, 2, 1), axis=2)               # [R, S, Ge]
            assert segc.max() <= 255
            segc = np.ascontiguousarray(segc.astype(np.uint8))
        del starts
        pairs = np.empty((R, nc, 2), np.uint8)
        pairs[:, :, 0] = np.take_along_axis(self.cols, order, axis=1)
        pairs[:, :, 1] = np.take_along_axis(self.values[:, :nc], order, axis=1).view(np.uint8)
        tail = np.ascontiguousarray(self.values[:, nc:], np.int8)
        return dict(pairs=np.ascontiguousarray(pairs),
                    tail=tail if tail.size else None, seg_counts=segc,
                    group_end=np.ascontiguousarray(self.group_end, np.int32),
                    rows=self.rows, row_len=self.row_len, n_max=self.n_max, n_cols=nc,
                    n_groups=self.n_groups, n_seg=S, seg_shift=self.seg_shift,
                    implicit_last=int(self.implicit_last))


def decode_level(st: "SubnetStore", level: int):
    """(columns int64 [R, n], values int64 [R, n]) of a level's entries, decoded
    from the flash layout (c_arrays) alone, as the kernels read it (entry order
    within a row: the layout's). The decoder lives with the row-sparse op family
    (toolchain/ir/ops/sparse.py), which reads the same arrays from the IR."""
    from toolchain.ir.ops.sparse import decode
    return decode(st.c_arrays(), st.level_entries(level))


def build_store(w: np.ndarray, order: np.ndarray, sparsities,
                implicit_dense: bool = True) -> SubnetStore:
    """Pack int8 weights `w` (any shape, rows on axis 0) with per-row importance
    `order` ([R, K], a permutation of each row's columns, most important first)
    into a nested store for `sparsities` (strictly increasing, in [0, 1))."""
    s = check_levels(sparsities)
    wr = as_rows(w)
    if wr.dtype != np.int8:
        raise IRError(f"build_store needs int8 weights, got {wr.dtype}")
    R, K = wr.shape
    order = np.asarray(order, np.int64)
    if order.shape != (R, K) or not np.all(np.sort(order, axis=1) == np.arange(K)):
        raise IRError(f"importance order {order.shape} is not a per-row permutation of "
                      f"{K} columns for a weight of shape {tuple(np.shape(w))}")
    counts = level_counts(K, s)
    ends = np.unique(counts)                    # ascending: sparsest first
    starts = np.concatenate([[0], ends[:-1]])
    N = int(ends[-1])
    implicit = bool(implicit_dense and N == K and len(ends) > 1)
    columns = np.empty((R, N), np.int64)
    for a, b in zip(starts, ends):
        columns[:, a:b] = np.sort(order[:, a:b], axis=1)
    values = np.take_along_axis(wr, columns, axis=1).astype(np.int8)
    n_explicit = int(starts[-1]) if implicit else N
    seg_shift, seg_counts = 8, None
    G = len(ends)
    G_exp = G - 1 if implicit else G
    if K > 256:
        for shift in (8, 7):
            nseg = (K + (1 << shift) - 1) >> shift
            sc = np.zeros((R, G, nseg), np.int64)
            for g in range(G_exp):
                seg = columns[:, starts[g]:ends[g]] >> shift
                for si in range(nseg):
                    sc[:, g, si] = (seg == si).sum(axis=1)
            if sc[:, :G_exp].sum(axis=1).max() <= 255:     # cumulative per segment
                seg_shift, seg_counts = shift, sc.astype(np.uint8)
                break
    cols = (columns[:, :n_explicit] & ((1 << seg_shift) - 1)).astype(np.uint8)
    return SubnetStore(shape=tuple(int(d) for d in np.shape(w)), sparsities=s, counts=counts,
                       group_end=ends.astype(np.int32), values=values, cols=cols,
                       seg_counts=seg_counts, seg_shift=seg_shift, implicit_last=implicit,
                       columns=columns)


def decode_columns(st: SubnetStore) -> np.ndarray:
    """int64 [R, N]: the full column of every entry, from the packed arrays only
    (what the kernels reconstruct; tests check it equals st.columns)."""
    R, K = st.rows, st.row_len
    ends = st.group_end.astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    out = np.empty((R, st.n_max), np.int64)
    for r in range(R):
        for g in range(st.n_groups):
            a, b = int(starts[g]), int(ends[g])
            if st.implicit_last and g == st.n_groups - 1:
                used = np.zeros(K, bool)
                used[out[r, :a]] = True
                out[r, a:b] = np.flatnonzero(~used)
                continue
            low = st.cols[r, a:b].astype(np.int64)
            if st.seg_counts is None:
                out[r, a:b] = low
            else:
                seg = np.repeat(np.arange(st.n_seg), st.seg_counts[r, g].astype(np.int64))
                out[r, a:b] = (seg << st.seg_shift) + low
    return out


def byte_report(stores) -> dict:
    """Bytes of one store (or a list, e.g. every layer of a model) against dense
    int8 weights, K dense-with-zeros models and K separate row-sparse models
    (values + 8/16-bit indices each)."""
    if isinstance(stores, SubnetStore):
        stores = [stores]
    dense = sum(s.rows * s.row_len for s in stores)
    store = sum(s.nbytes() for s in stores)
    L = len(stores[0].counts)
    k_dense = L * dense
    k_sparse = 0
    for s in stores:
        ib = 1 if s.row_len <= 256 else 2
        k_sparse += sum(s.rows * (int(n) * (1 + ib) if n < s.row_len else s.row_len)
                        for n in s.counts)
    return dict(levels=list(stores[0].sparsities), store_bytes=int(store),
                dense_int8_bytes=int(dense), store_vs_dense=store / dense,
                k_dense_models_bytes=int(k_dense), store_vs_k_dense=store / k_dense,
                k_sparse_models_bytes=int(k_sparse), store_vs_k_sparse=store / k_sparse)
