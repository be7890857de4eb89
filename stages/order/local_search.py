"""Local search on an open path that maximises the sum of adjacent similarities (compiled with numba).

Two move families, both restricted to each node's kNN list (the candidate edges) and driven by a
work queue ("don't-look bits"): a node is re-examined only after an edge at it changed.
- 2-opt: add edge (a, c) for a neighbour c of a, reversing the path between them; on an open path
  this includes reversing a prefix or suffix (moving an end).
- Or-opt: move a segment of 1-3 documents that starts or ends at a next to a neighbour c, in either
  orientation, closing the gap it leaves.
Only candidates whose new edge (a, c) beats the edge it replaces at a are evaluated (the positive
gain criterion of Lin-Kernighan); lists are sorted by similarity, so the scan stops early.
Candidate similarities must be exact float32 dot products of the vectors (`exact_candidate_sims`
recomputes them from a float16 table), so every gain is exact up to float32 rounding; moves must gain
more than a small epsilon, and a move budget bounds the search regardless.
`max_move` bounds how many positions one move may shift (array reversal / shift cost).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_EPS = 1e-5


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _sim(x, u, v):
    s = np.float32(0.0)
    for t in range(x.shape[1]):
        s += x[u, t] * x[v, t]
    return s


@njit(cache=True, nogil=True)
def _push(node, queue, inq, head_tail):
    if not inq[node]:
        n = queue.shape[0]
        queue[head_tail[1] % n] = node
        head_tail[1] += 1
        inq[node] = True


@njit(cache=True, nogil=True, fastmath=True)
def _reverse(p, pos, wn, x, lo, hi):
    """Reverse p[lo..hi] and keep pos / wn (edge weights by position) in step."""
    n = p.shape[0]
    i, j = lo, hi
    while i < j:
        t = p[i]
        p[i] = p[j]
        p[j] = t
        pos[p[i]] = i
        pos[p[j]] = j
        i += 1
        j -= 1
    if i == j:
        pos[p[i]] = i
    i, j = lo, hi - 1
    while i < j:
        t = wn[i]
        wn[i] = wn[j]
        wn[j] = t
        i += 1
        j -= 1
    if lo > 0:
        wn[lo - 1] = _sim(x, p[lo - 1], p[lo])
    if hi < n - 1:
        wn[hi] = _sim(x, p[hi], p[hi + 1])


@njit(cache=True, nogil=True)
def _place(p, pos, wn, x, start, nodes, weights, count):
    """Write `count` nodes (with the `count - 1` internal edge weights) at positions start.."""
    for t in range(count):
        p[start + t] = nodes[t]
        pos[nodes[t]] = start + t
    for t in range(count - 1):
        wn[start + t] = weights[t]


@njit(cache=True, nogil=True, fastmath=True)
def _or_move(p, pos, wn, x, s, e, a, j, after, tmp_p, tmp_w):
    """Move segment p[s..e] (a = one of its ends, to become adjacent to c = p[j]) after or before c."""
    n = p.shape[0]
    seg_len = e - s + 1
    c = p[j]
    # segment in the order it will be written: a next to c
    a_first = after  # after c: c, a, ..., b ; before c: b, ..., a, c
    forward = (a == p[s]) == a_first
    seg = np.empty(3, dtype=np.int64)
    segw = np.empty(2, dtype=np.float32)
    for t in range(seg_len):
        seg[t] = p[s + t] if forward else p[e - t]
    for t in range(seg_len - 1):
        segw[t] = wn[s + t] if forward else wn[e - 1 - t]
    if j > e:
        blk_lo = e + 1
        blk_hi = j if after else j - 1
        m = blk_hi - blk_lo + 1
        for t in range(m):
            tmp_p[t] = p[blk_lo + t]
        for t in range(m - 1):
            tmp_w[t] = wn[blk_lo + t]
        _place(p, pos, wn, x, s, tmp_p, tmp_w, m)
        _place(p, pos, wn, x, s + m, seg, segw, seg_len)
        wn[s + m - 1] = _sim(x, p[s + m - 1], p[s + m])
        lo, hi = s, s + m + seg_len - 1
    else:
        blk_lo = j + 1 if after else j
        blk_hi = s - 1
        m = blk_hi - blk_lo + 1
        for t in range(m):
            tmp_p[t] = p[blk_lo + t]
        for t in range(m - 1):
            tmp_w[t] = wn[blk_lo + t]
        _place(p, pos, wn, x, blk_lo, seg, segw, seg_len)
        _place(p, pos, wn, x, blk_lo + seg_len, tmp_p, tmp_w, m)
        wn[blk_lo + seg_len - 1] = _sim(x, p[blk_lo + seg_len - 1], p[blk_lo + seg_len])
        lo, hi = blk_lo, blk_lo + seg_len + m - 1
    if lo > 0:
        wn[lo - 1] = _sim(x, p[lo - 1], p[lo])
    if hi < n - 1:
        wn[hi] = _sim(x, p[hi], p[hi + 1])
    return c


@njit(cache=True, nogil=True)
def _save(lo, hi, p, wn, bp, bw, hull):
    """Before positions lo..hi change, remember their values (the undo log of a trial is the hull
    of everything it touched, copied the first time each position is touched)."""
    n = p.shape[0]
    lo = max(lo, 0)
    hi = min(hi, n - 1)
    if hull[0] > hull[1]:
        for q in range(lo, hi + 1):
            bp[q] = p[q]
            bw[q] = wn[q]
        hull[0], hull[1] = lo, hi
        return
    for q in range(lo, hull[0]):
        bp[q] = p[q]
        bw[q] = wn[q]
    for q in range(hull[1] + 1, hi + 1):
        bp[q] = p[q]
        bw[q] = wn[q]
    hull[0] = min(hull[0], lo)
    hull[1] = max(hull[1], hi)


@njit(cache=True, nogil=True, fastmath=True)
def _search(p, pos, wn, x, nbrs, nbr_sims, queue, inq, head_tail, tmp_p, tmp_w, max_move, max_seg,
            track, bp, bw, hull, max_moves):
    """Apply best-per-node improving moves until the queue is empty; returns (total gain, moves)."""
    n = p.shape[0]
    k = nbrs.shape[1]
    touched = np.empty(8, dtype=np.int64)
    seg_rem = np.empty((2, 3), dtype=np.float32)
    moves = 0
    total = 0.0
    ninf = np.float32(-np.inf)
    while head_tail[0] < head_tail[1]:
        a = queue[head_tail[0] % n]
        head_tail[0] += 1
        inq[a] = False
        if moves >= max_moves:
            continue
        i = pos[a]
        w_succ = wn[i] if i < n - 1 else ninf
        w_pred = wn[i - 1] if i > 0 else ninf
        w_min = min(w_succ, w_pred)
        best_gain = np.float32(_EPS)
        best_kind = 0  # 1: 2-opt reverse(lo, hi); 2: or-opt
        b_lo = b_hi = b_s = b_e = b_j = 0
        b_after = False
        # gap-closing delta of removing each candidate segment at a (independent of c)
        for side in range(2):
            for seg_len in range(1, max_seg + 1):
                s = i if side == 0 else i - seg_len + 1
                e = s + seg_len - 1
                rem = np.float32(-np.inf)
                if s >= 0 and e <= n - 1:
                    rem = np.float32(0.0)
                    if s > 0:
                        rem -= wn[s - 1]
                    if e < n - 1:
                        rem -= wn[e]
                    if s > 0 and e < n - 1:
                        rem += _sim(x, p[s - 1], p[e + 1])
                seg_rem[side, seg_len - 1] = rem
        for r in range(k):
            c = nbrs[a, r]
            if c < 0 or c == a:
                continue
            if nbr_sims[a, r] <= w_min:
                break
            s_ac = nbr_sims[a, r]
            j = pos[c]
            lo = min(i, j)
            hi = max(i, j)
            if hi - lo >= 2 and hi - lo <= max_move:
                if s_ac > w_succ:
                    # new edges (p[lo], p[hi]) and (p[lo+1], p[hi+1]); reverse p[lo+1..hi]
                    g = s_ac - wn[lo]
                    if hi < n - 1:
                        g += _sim(x, p[lo + 1], p[hi + 1]) - wn[hi]
                    if g > best_gain:
                        best_gain, best_kind, b_lo, b_hi = g, 1, lo + 1, hi
                if s_ac > w_pred:
                    # new edges (p[lo], p[hi]) and (p[lo-1], p[hi-1]); reverse p[lo..hi-1]
                    g = s_ac - wn[hi - 1]
                    if lo > 0:
                        g += _sim(x, p[lo - 1], p[hi - 1]) - wn[lo - 1]
                    if g > best_gain:
                        best_gain, best_kind, b_lo, b_hi = g, 1, lo, hi - 1
            # Or-opt: a is the start (detaches from pred) or the end (from succ) of a segment
            for side in range(2):
                if side == 0 and not s_ac > w_pred:
                    continue
                if side == 1 and not s_ac > w_succ:
                    continue
                for seg_len in range(1, max_seg + 1):
                    if side == 1 and seg_len == 1:
                        continue  # same segment as side 0
                    s = i if side == 0 else i - seg_len + 1
                    e = s + seg_len - 1
                    if s < 0 or e > n - 1 or (j >= s and j <= e):
                        continue
                    if (j > e and j - s > max_move) or (j < s and e - j > max_move):
                        continue
                    b = p[e] if p[s] == a else p[s]
                    rem = seg_rem[side, seg_len - 1]
                    # after c: c-a ... b-d, d = p[j+1]
                    if not (j + 1 >= s and j + 1 <= e):
                        g = rem + s_ac
                        if j < n - 1:
                            g += _sim(x, b, p[j + 1]) - wn[j]
                        if g > best_gain:
                            best_gain, best_kind, b_s, b_e, b_j, b_after = g, 2, s, e, j, True
                    # before c: d-b ... a-c, d = p[j-1]
                    if not (j - 1 >= s and j - 1 <= e):
                        g = rem + s_ac
                        if j > 0:
                            g += _sim(x, p[j - 1], b) - wn[j - 1]
                        if g > best_gain:
                            best_gain, best_kind, b_s, b_e, b_j, b_after = g, 2, s, e, j, False
        if best_kind == 0:
            continue
        moves += 1
        total += best_gain
        nt = 0
        if best_kind == 1:
            for q in (b_lo - 1, b_lo, b_hi, b_hi + 1):
                if q >= 0 and q < n:
                    touched[nt] = p[q]
                    nt += 1
            if track:
                _save(b_lo - 1, b_hi, p, wn, bp, bw, hull)
            _reverse(p, pos, wn, x, b_lo, b_hi)
        else:
            for q in (b_s - 1, b_s, b_e, b_e + 1, b_j - 1, b_j, b_j + 1):
                if q >= 0 and q < n:
                    touched[nt] = p[q]
                    nt += 1
            if track:
                _save(min(b_s, b_j) - 1, max(b_e, b_j), p, wn, bp, bw, hull)
            _or_move(p, pos, wn, x, b_s, b_e, a, b_j, b_after, tmp_p, tmp_w)
        for t in range(nt):
            _push(touched[t], queue, inq, head_tail)
        _push(a, queue, inq, head_tail)
    return total, moves


@njit(cache=True, nogil=True, fastmath=True)
def _exchange(p, pos, wn, x, b0, b1, c1, tmp_p, tmp_w):
    """Swap the adjacent segments p[b0..b1] and p[b1+1..c1] (a double bridge on an open path)."""
    n = p.shape[0]
    m = c1 - b0 + 1
    lb = b1 - b0 + 1
    lc = c1 - b1
    for t in range(lc):
        tmp_p[t] = p[b1 + 1 + t]
    for t in range(lc - 1):
        tmp_w[t] = wn[b1 + 1 + t]
    for t in range(lb):
        tmp_p[lc + t] = p[b0 + t]
    for t in range(lb - 1):
        tmp_w[lc + t] = wn[b0 + t]
    for t in range(m):
        p[b0 + t] = tmp_p[t]
        pos[tmp_p[t]] = b0 + t
    for t in range(lc - 1):
        wn[b0 + t] = tmp_w[t]
    wn[b0 + lc - 1] = _sim(x, p[b0 + lc - 1], p[b0 + lc])
    for t in range(lb - 1):
        wn[b0 + lc + t] = tmp_w[lc + t]
    if b0 > 0:
        wn[b0 - 1] = _sim(x, p[b0 - 1], p[b0])
    if c1 < n - 1:
        wn[c1] = _sim(x, p[c1], p[c1 + 1])


@njit(cache=True, nogil=True, fastmath=True)
def improve_path(path, x, nbrs, nbr_sims, max_move, max_seg, kicks, max_kick, seed):
    """2-opt + Or-opt to a local optimum, then `kicks` rounds of iterated local search: exchange two
    random adjacent segments (<= max_kick long each), re-optimise around them, keep the result
    only if the path total rose (otherwise undo). Returns (path, moves applied, kicks kept)."""
    n = path.shape[0]
    p = path.copy()
    if n < 3:
        return p, 0, 0
    np.random.seed(seed)
    pos = np.empty(n, dtype=np.int64)
    for i in range(n):
        pos[p[i]] = i
    wn = np.empty(n, dtype=np.float32)
    wn[n - 1] = 0.0
    for i in range(n - 1):
        wn[i] = _sim(x, p[i], p[i + 1])
    queue = np.empty(n, dtype=np.int64)
    inq = np.zeros(n, dtype=np.bool_)
    head_tail = np.zeros(2, dtype=np.int64)
    for i in range(n):
        _push(p[i], queue, inq, head_tail)
    cap = max(max_move, 2 * max_kick) + 4
    tmp_p = np.empty(cap, dtype=np.int64)
    tmp_w = np.empty(cap, dtype=np.float32)
    bp = np.empty(n, dtype=np.int64)
    bw = np.empty(n, dtype=np.float32)
    hull = np.array([1, 0], dtype=np.int64)
    _, moves = _search(p, pos, wn, x, nbrs, nbr_sims, queue, inq, head_tail, tmp_p, tmp_w, max_move,
                       max_seg, False, bp, bw, hull, 100 * n)
    kept = 0
    max_kick = min(max_kick, (n - 1) // 2)
    if max_kick < 1:
        return p, moves, kept
    for _ in range(kicks):
        lb = np.random.randint(1, max_kick + 1)
        lc = np.random.randint(1, max_kick + 1)
        b0 = np.random.randint(0, n - lb - lc + 1)
        b1 = b0 + lb - 1
        c1 = b1 + lc
        hull[0], hull[1] = 1, 0
        _save(b0 - 1, c1, p, wn, bp, bw, hull)
        before = 0.0
        for q in (b0 - 1, b1, c1):
            if q >= 0 and q < n - 1:
                before += wn[q]
        _exchange(p, pos, wn, x, b0, b1, c1, tmp_p, tmp_w)
        after = 0.0
        for q in (b0 - 1, b0 + lc - 1, c1):
            if q >= 0 and q < n - 1:
                after += wn[q]
        for q in (b0 - 1, b0, b0 + lc - 1, b0 + lc, c1, c1 + 1):
            if q >= 0 and q < n:
                _push(p[q], queue, inq, head_tail)
        gain, m = _search(p, pos, wn, x, nbrs, nbr_sims, queue, inq, head_tail, tmp_p, tmp_w, max_move,
                          max_seg, True, bp, bw, hull, 1000)
        if after - before + gain > _EPS:
            kept += 1
            moves += m
        else:
            for q in range(hull[0], hull[1] + 1):
                p[q] = bp[q]
                wn[q] = bw[q]
                pos[p[q]] = q
    return p, moves, kept


@njit(cache=True, nogil=True, fastmath=True)
def exact_candidate_sims(x, nbrs):
    """Dot products of every row with each of its listed candidates (-inf where none)."""
    n, k = nbrs.shape
    out = np.empty((n, k), dtype=np.float32)
    for i in range(n):
        for r in range(k):
            j = nbrs[i, r]
            out[i, r] = _sim(x, i, j) if j >= 0 else np.float32(-np.inf)
    return out
