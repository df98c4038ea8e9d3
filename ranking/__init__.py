"""Dwell-time-aware feed ranking: T_skip estimation, P(skip) and the value function."""

__all__: list[str] = []
