"""Judging a training procedure on windows its weights never saw.

``metrics`` (MAE, RMSE, sMAPE, MASE, R²), ``baselines`` (naive, seasonal naive and the
statistical forecasters), ``members`` (the served forecast's members and how they
combine), ``backtest`` (rolling origins shared by every series), ``intervals``
(split-conformal widths per horizon step) and ``procedure`` (fit to the first cutoff,
backtest beside the comparators, refit on all data).

May import: the root and model/.
"""
