"""Registration of himari's gymnasium environments (``himari/Trading-v0``).

Kept apart from ``himari.engine`` so that registering never loads the native module: the entry
points are strings, resolved only when ``gymnasium.make`` / ``make_vec`` builds an env.
``import himari.engine`` registers them; so does ``import himari`` when gymnasium is already
imported (the package root does not import gymnasium itself, to stay light).
"""

from __future__ import annotations

TRADING_ENV_ID = "himari/Trading-v0"


def register_envs() -> None:
    """Register ``himari/Trading-v0`` with gymnasium (idempotent)."""
    from gymnasium.envs.registration import register, registry

    if TRADING_ENV_ID in registry:
        return
    register(
        id=TRADING_ENV_ID,
        entry_point="himari.gym_env:TradingEnv",
        vector_entry_point="himari.gym_env:make_vec_env",
    )
