"""The global LSTM forecaster: a pure ``nn.Module``, tensors in, tensors out."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LSTMForecaster"]


class LSTMForecaster(nn.Module):
    """Reads a window of ``lookback`` steps and emits all ``horizon`` steps at once.

    Feature 0 of the input is the (per-series scaled) target, carried over missing
    periods, and feature 1 the mask (1 where observed; 0 for gaps and for the padding
    before a short series starts). Two choices make one set of weights fit many series:

    - each window is scaled by itself: the target is taken relative to the window's last
      value and divided by its mean absolute change between observed neighbours, and the
      output is scaled back. So ``a * y + b`` in gives ``a * forecast + b`` out (a > 0),
      and windows of any level, trend and volatility look alike to the weights;
    - the output is a correction to the seasonal naive forecast read off the window
      (the last season repeated; the last value when the window holds less than one
      season since the series began, the rule of :func:`lstm_pipeline.model.seasonal.forecast_season`).
      The head's last layer starts at zero, so an untrained model *is* seasonal naive and
      training only has to learn what that baseline misses.
    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.1,
        bidirectional: bool = False,
        proj_size: int = 0,
        season_length: int = 1,
    ) -> None:
        super().__init__()
        self.horizon = horizon
        self.season_length = season_length
        self.lstm = nn.LSTM(
            input_size=n_features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            # nn.LSTM applies dropout between layers only; with one layer it would warn.
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            proj_size=proj_size,
        )
        self._directions = 2 if bidirectional else 1
        width = (proj_size or hidden_size) * self._directions
        self.head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, horizon))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, L, F]`` -> forecast of the scaled target ``[B, H]``."""
        level = x[:, -1:, 0]  # [B, L, F] -> [B, 1]
        spread = self._spread(x[:, :, 0], x[:, :, 1])  # [B, 1]
        target = (x[:, :, :1] - level.unsqueeze(-1)) / spread.unsqueeze(-1)  # [B, L, 1]
        _, (h_n, _) = self.lstm(torch.cat([target, x[:, :, 1:]], dim=-1))
        # h_n: [layers * D, B, H_out]; the top layer's final state of each direction.
        top = h_n[-self._directions :].transpose(0, 1).reshape(x.shape[0], -1)  # -> [B, D * H_out]
        return self._seasonal_base(x[:, :, 0], x[:, :, 1]) + self.head(top) * spread  # [B, H]

    @staticmethod
    def _spread(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The window's mean absolute change between observed neighbours ``[B, L]`` -> ``[B, 1]``."""
        pairs = mask[:, 1:] * mask[:, :-1]  # [B, L-1]
        change = ((y[:, 1:] - y[:, :-1]).abs() * pairs).sum(dim=1, keepdim=True)
        mean = change / pairs.sum(dim=1, keepdim=True).clamp(min=1.0)
        return mean.clamp(min=1e-2)

    def _seasonal_base(self, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Seasonal naive from the window's target and mask ``[B, L]`` -> ``[B, H]``."""
        naive = y[:, -1:].expand(-1, self.horizon)  # [B, 1] -> [B, H]
        m = self.season_length
        if not 1 < m <= y.shape[1]:
            return naive
        reps = -(-self.horizon // m)  # ceil(H / m)
        seasonal = y[:, -m:].repeat(1, reps)[:, : self.horizon]  # [B, m] -> [B, H]
        # Periods since the series began (the padding before it has mask 0 throughout).
        began = torch.cumsum(mask, dim=1) > 0  # [B, L]
        return torch.where(began.sum(dim=1, keepdim=True) >= m, seasonal, naive)
