"""Engagement-trend forecasting (DIGMN and baselines) from session logs."""

__all__: list[str] = []
