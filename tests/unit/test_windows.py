"""Windows over the panel: cutoffs, limits, the mask, padding and gathering, by exact index."""

from __future__ import annotations

import numpy as np
import torch

from lstm_pipeline.model.windows import MASK, TARGET, Panel, Windows, gather, windows

L, H = 3, 2


def panel_of(*lengths: int, pad: int = 0, missing: dict[int, list[int]] | None = None) -> Panel:
    """Series i: ``pad`` masked rows, then ``lengths[i]`` rows whose target is 1000*i + t."""
    arrays, offsets = [], []
    for i, n in enumerate(lengths):
        t = np.arange(pad + n, dtype=np.float64)
        mask = (t >= pad).astype(np.float64)
        for local in (missing or {}).get(i, []):
            mask[pad + local] = 0.0
        arrays.append(np.stack([1000 * i + t, mask], axis=1))
        offsets.append(sum(len(a) for a in arrays[:-1]))
    values = np.concatenate(arrays).astype(np.float32)
    lengths_ = np.array([len(a) for a in arrays], dtype=np.int64)
    return Panel(tuple(f"s{i}" for i in range(len(lengths))), values, np.array(offsets, np.int64), lengths_,
                 np.zeros(len(lengths), np.int64), pad)


def cutoffs(panel: Panel, found: Windows) -> list[tuple[int, int, int]]:
    """(series, local cutoff row, limit) of each window."""
    out = []
    for start, limit in zip(found.starts.tolist(), found.limits.tolist()):
        cut = start + L - 1
        series = int(np.searchsorted(panel.offsets, cut, side="right") - 1)
        out.append((series, cut - int(panel.offsets[series]), limit))
    return out


def test_every_observed_cutoff_with_a_target_makes_a_window_with_its_limit() -> None:
    panel = panel_of(6)
    found = windows(panel, L, H, last_target=panel.lengths - 1)
    # cutoffs 2..4 (first needs L rows of input; last needs one target); near the end the limit shrinks
    assert cutoffs(panel, found) == [(0, 2, 2), (0, 3, 2), (0, 4, 1)]


def test_last_target_bounds_the_targets_a_window_may_score() -> None:
    panel = panel_of(10, 7)
    found = windows(panel, L, H, last_target=np.array([5, 6]))
    assert cutoffs(panel, found) == [(0, 2, 2), (0, 3, 2), (0, 4, 1), (1, 2, 2), (1, 3, 2), (1, 4, 2), (1, 5, 1)]


def test_validation_window_sits_exactly_at_the_split() -> None:
    panel = panel_of(10, 7)
    split = np.array([7, 4])
    val = windows(panel, L, H, last_target=panel.lengths - 1, first_cutoff=split, last_cutoff=split)
    assert cutoffs(panel, val) == [(0, 7, 2), (1, 4, 2)]
    train = windows(panel, L, H, last_target=split)
    assert max(c + lim for s, c, lim in cutoffs(panel, train) if s == 0) == 7  # no target beyond the split


def test_padding_lets_a_short_series_make_windows() -> None:
    panel = panel_of(3, pad=L - 1)  # 3 observations, shorter than L + H
    found = windows(panel, L, H, last_target=panel.lengths - 1)
    # local rows: 0, 1 pad; observations at 2, 3, 4: cutoffs 2 (first obs) and 3
    assert cutoffs(panel, found) == [(0, 2, 2), (0, 3, 1)]
    x, _, w = gather(torch.from_numpy(panel.values), found, L, H)
    assert x[0, :, MASK].tolist() == [0.0, 0.0, 1.0]  # two padding steps, then the first observation
    assert w.tolist() == [[1.0, 1.0], [1.0, 0.0]]


def test_unobserved_cutoffs_and_unobserved_targets_are_not_windows() -> None:
    panel = panel_of(8, missing={0: [3, 6, 7]})  # rows 3, 6, 7 missing
    found = windows(panel, L, H, last_target=panel.lengths - 1)
    # cutoff 3 missing; cutoff 5's targets 6, 7 both missing; cutoffs 6, 7 missing
    assert cutoffs(panel, found) == [(0, 2, 2), (0, 4, 2)]
    _, _, w = gather(torch.from_numpy(panel.values), found, L, H)
    assert w.tolist() == [[0.0, 1.0], [1.0, 0.0]]  # target row 3 missing; target row 6 missing


def test_gather_returns_exact_panel_slices_and_targets() -> None:
    panel = panel_of(10, 7)
    values = torch.from_numpy(panel.values)
    found = windows(panel, L, H, last_target=panel.lengths - 1)
    x, y, w = gather(values, found, L, H)
    assert x.shape == (len(found), L, 2) and y.shape == (len(found), H) and w.shape == (len(found), H)
    for b, start in enumerate(found.starts.tolist()):
        assert torch.equal(x[b], values[start : start + L])
    # the window with cutoff s1 local 4 reads 1002..1004 and predicts 1005, 1006
    b = cutoffs(panel, found).index((1, 4, 2))
    assert x[b, :, TARGET].tolist() == [1002.0, 1003.0, 1004.0] and y[b].tolist() == [1005.0, 1006.0]


def test_no_windows_when_nothing_qualifies() -> None:
    panel = panel_of(2)
    found = windows(panel, L, H, last_target=panel.lengths - 1)
    assert len(found) == 0 and found.starts.dtype == np.int64
