"""The global LSTM forecaster: a pure ``nn.Module``, tensors in, tensors out."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LSTMForecaster"]


class LSTMForecaster(nn.Module):
    """Reads a window of ``lookback`` steps and emits all ``horizon`` steps at once.

    Feature 0 of the input is the (per-series scaled) target. Two choices make one set
    of weights fit many series:

    - inputs are taken relative to the window's last observed value, so windows from
      different parts of a trending series look alike;
    - the output is a correction to the seasonal naive forecast read off the window
      (the last season repeated; the last value when ``season_length`` is 1 or longer
      than the window). The head's last layer starts at zero, so an untrained model
      *is* seasonal naive and training only has to learn what that baseline misses.
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
        target = x[:, :, :1] - level.unsqueeze(-1)  # [B, L, 1]
        _, (h_n, _) = self.lstm(torch.cat([target, x[:, :, 1:]], dim=-1))
        # h_n: [layers * D, B, H_out]; the top layer's final state of each direction.
        top = h_n[-self._directions :].transpose(0, 1).reshape(x.shape[0], -1)  # -> [B, D * H_out]
        return self._seasonal_base(x[:, :, 0]) + self.head(top)  # [B, H]

    def _seasonal_base(self, y: torch.Tensor) -> torch.Tensor:
        """Seasonal naive from the window's target ``[B, L]`` -> ``[B, H]``."""
        m = self.season_length if 1 < self.season_length <= y.shape[1] else 1
        reps = -(-self.horizon // m)  # ceil(H / m)
        return y[:, -m:].repeat(1, reps)[:, : self.horizon]  # [B, m] -> [B, H]
