"""Types of the native core ``himari._core`` (pybind11, cpp/bindings): private, use ``himari.engine``.

Every array argument is checked by the binding and never converted silently; a bad one raises a
``himari.errors`` exception naming the argument (``ShapeError`` for a dtype, extent or layout,
``InvalidArgumentError`` for a value, ``DeviceError`` for memory on the wrong device,
``CudaUnavailableError`` where the build or machine has no CUDA). The module defines no
exception types of its own. tests/python/engine/test_core_stub.py keeps this file in step with
the module.
"""

from typing import Any, Protocol, TypeAlias

import numpy
from numpy.typing import ArrayLike, NDArray
from typing_extensions import CapsuleType

class _CudaArrayInterface(Protocol):
    """CUDA memory described by ``__cuda_array_interface__`` (CuPy, Numba, torch)."""

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]: ...

class _DLPackArray(Protocol):
    """An array exporting DLPack (torch tensors, CuPy arrays)."""

    def __dlpack__(self, *, stream: Any = ...) -> CapsuleType: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...

_DeviceArrayLike: TypeAlias = _CudaArrayInterface | _DLPackArray
"""Memory on a CUDA device, read in place (C-contiguous, on the call's device)."""

ACCOUNT_COLUMNS: int
"""Account columns appended to each observation row (position, unrealised PnL, drawdown,
log1p(bars in position))."""
ACCOUNT_FIELDS: list[str]
"""Names accepted by ``TradingEnv.account_field`` (and ``account.<name>`` keys of
``CudaTradingEnv.buffers``)."""
TERM_FIELDS: list[str]
"""Names of the reward terms (``TradingEnv.term_field``, ``term.<name>`` buffers)."""
METRIC_NAMES: tuple[str, ...]
"""The columns of the metrics array returned by the backtesters, in order."""
ACTION_DTYPES: tuple[str, ...]
"""numpy names of the dtypes an action or signal array may have (native byte order)."""

def cuda_compiled() -> bool:
    """Whether this build contains the CUDA backend."""

def cuda_device_count() -> int:
    """Visible CUDA devices (0 in a build without CUDA)."""

def cuda_unavailable_reason() -> str:
    """Why no CUDA device can be used (no driver, no GPU, a CPU build); empty when one is visible."""

def build_summary() -> str:
    """Compiler, CPU kernel set and CUDA status of this build."""

def require_device(device: str) -> None:
    """Parse ``cpu``, ``cuda`` or ``cuda:N``; raise ``CudaUnavailableError`` when it cannot run."""

def counter_hash(seed: int, stream: int, counter: int) -> int:
    """The counter-based 64-bit hash behind episode starts (unsigned 64-bit arguments)."""

def backtest_signals(
    open: ArrayLike,
    close: ArrayLike,
    signals: ArrayLike,
    fee: float,
    slippage: float,
    mode: str,
    bars_per_year: float,
    return_equity: bool,
    device: str = "cpu",
    threads: int = 1,
) -> tuple[NDArray[numpy.float64], NDArray[numpy.float64] | None]:
    """Backtest M action columns ``signals [T, M]`` over prices ``[T]``: metrics ``[M,
    len(METRIC_NAMES)]`` and, when ``return_equity``, equity ``[T, M]``; on up to ``threads``
    threads (0: every hardware thread)."""

def backtest_signals_held_runs(
    open: ArrayLike,
    close: ArrayLike,
    signals: ArrayLike,
    fee: float,
    slippage: float,
    mode: str,
    bars_per_year: float,
    threads: int = 1,
) -> NDArray[numpy.float64]:
    """Long-flat metrics ``[M, len(METRIC_NAMES)]`` of ``signals [T, M]`` with account maths only
    at fills (held runs through prefix sums and a range tree over the closes); on up to
    ``threads`` threads (0: every hardware thread)."""

def hardware_threads() -> int:
    """The CPUs this process may run on (at least 1): what ``threads=0`` means."""

def backtest_plan(n_bars: int, n_strategies: int, with_equity: bool, threads: int) -> tuple[str, int]:
    """How ``backtest_signals`` would share the work: ``("sequential" | "strategies" |
    "time_scan", workers)``."""

def replay_actions(
    open: ArrayLike,
    close: ArrayLike,
    actions: ArrayLike,
    fee: float,
    slippage: float,
    mode: str,
    reward: RewardConfig,
) -> tuple[NDArray[numpy.float64], NDArray[numpy.float64], NDArray[numpy.float64], NDArray[numpy.float32]]:
    """The env's rewards ``[T-1, M]``, equity ``[T, M]``, position ``[T, M]`` and account columns
    ``[T, M, ACCOUNT_COLUMNS]`` for fixed actions ``[T, M]``."""

def ekf(
    prices: ArrayLike, params: EkfParams, return_innovations: bool, device: str = "cpu"
) -> tuple[NDArray[numpy.float64], NDArray[numpy.float64] | None]:
    """Filter float32/float64 prices ``[B, T]``: states ``[B, T, 4]`` and, when
    ``return_innovations``, innovations ``[B, T, 2]``."""

def fan_residuals(x: ArrayLike, pieces: ArrayLike, window: int, top_k: int) -> NDArray[numpy.float64]:
    """FAN's causal residuals of float64 ``x [T, F]`` over int64 ``pieces [P, 2]`` (start, end):
    each row minus its trailing window's ``top_k`` largest rFFT components; 0 outside the pieces."""

def cuda_pointer_device(ptr: int) -> int:
    """The CUDA device that owns address ``ptr``, or -1 for host memory (and without CUDA)."""

def cuda_synchronize(device: int, stream: int = 0) -> None:
    """Wait for ``stream`` (a ``cudaStream_t`` as an integer, 0 the legacy default) on ``device``."""

def backtest_signals_cuda(
    open: ArrayLike,
    close: ArrayLike,
    signals: ArrayLike | _DeviceArrayLike,
    fee: float,
    slippage: float,
    mode: str,
    bars_per_year: float,
    return_equity: bool,
    device: int,
    stream: int = 0,
    kernel: str = "auto",
    chunk: int = 0,
    tiles: bool = True,
) -> tuple[NDArray[numpy.float64], DeviceArray | None]:
    """``backtest_signals`` on CUDA device ``device``: ``signals`` may be device memory (read in
    place) or a host array (copied once); the equity stays on the device. ``kernel``: ``auto``
    (the chunked scan over time unless the equity curve is asked for), ``scan``, ``held_runs``
    (the scan with long-flat chunks summarised by held runs: metrics only) or ``sequential`` (one
    thread per strategy); ``chunk``: bars per scan chunk, 0 to choose; ``tiles``: let the scan stage
    signals in shared memory where their rows allow (False: one action per thread per bar, the
    same results to the bit)."""

def ekf_cuda(
    prices: ArrayLike | _DeviceArrayLike, params: EkfParams, return_innovations: bool, device: int, stream: int = 0
) -> tuple[DeviceArray, DeviceArray | None]:
    """``ekf`` on CUDA device ``device``; the results stay on the device."""

class RewardConfig:
    """Reward shaping coefficients (cpp/include/himari/reward/reward_config.h); all zero is the
    plain log return of equity."""

    drawdown_penalty: float
    turnover_penalty: float
    dsr_weight: float
    dsr_decay: float
    def __init__(self) -> None: ...

class EkfParams:
    """Noise and dynamics of the EKF (cpp/include/himari/filters/ekf_params.h)."""

    q_level: float
    q_velocity: float
    q_acceleration: float
    q_log_variance: float
    r_level: float
    r_log_square: float
    square_floor: float
    phi: float
    mu: float
    p0_level: float
    p0_velocity: float
    p0_acceleration: float
    p0_log_variance: float
    use_volatility_obs: bool
    def __init__(self) -> None: ...

class Market:
    """Prices and features copied into native memory (float32 or float64 inputs, checked finite
    and, for prices, > 0)."""

    def __init__(self, open: ArrayLike, close: ArrayLike, features: ArrayLike | None = None) -> None: ...
    @property
    def n_bars(self) -> int: ...
    @property
    def n_features(self) -> int: ...
    @property
    def open(self) -> NDArray[numpy.float64]:
        """Read-only view ``[T]``."""
    @property
    def close(self) -> NDArray[numpy.float64]:
        """Read-only view ``[T]``."""
    @property
    def features(self) -> NDArray[numpy.float32]:
        """Read-only view ``[T, F]``."""

class TradingEnv:
    """``num_envs`` accounts over one ``Market`` on the CPU. The array properties are read-only
    views of persistent buffers that every ``step`` and ``reset`` rewrites in place."""

    def __init__(
        self,
        market: Market,
        num_envs: int,
        episode_length: int,
        window: int,
        warmup: int,
        seed: int,
        random_start: bool,
        fee: float,
        slippage: float,
        mode: str,
        reward: RewardConfig,
        final_obs: bool = True,
    ) -> None: ...
    def reset(self, reseed: bool, seed: int) -> None:
        """Restart every episode; ``reseed`` replaces the seed and restarts the episode counters."""
    def step(self, actions: ArrayLike) -> None:
        """Step all envs with integer ``actions [num_envs]`` in {0, 1, 2} of a dtype in
        ``ACTION_DTYPES``."""
    def account_field(self, name: str) -> NDArray[numpy.float64]:
        """The ``[num_envs]`` view of an account field named in ``ACCOUNT_FIELDS``."""
    def term_field(self, name: str) -> NDArray[numpy.float64]:
        """The ``[num_envs]`` view of a reward term named in ``TERM_FIELDS``."""
    @property
    def seed(self) -> int: ...
    @property
    def obs(self) -> NDArray[numpy.float32]:
        """``[num_envs, window, n_features + ACCOUNT_COLUMNS]``."""
    @property
    def final_obs(self) -> NDArray[numpy.float32] | None:
        """Like ``obs``: the last observation of episodes that ended (None unless ``final_obs``)."""
    @property
    def reward(self) -> NDArray[numpy.float32]: ...
    @property
    def terminated(self) -> NDArray[numpy.bool_]: ...
    @property
    def truncated(self) -> NDArray[numpy.bool_]: ...
    @property
    def episode_done(self) -> NDArray[numpy.bool_]: ...
    @property
    def bar(self) -> NDArray[numpy.int64]: ...
    @property
    def episode_return(self) -> NDArray[numpy.float64]: ...
    @property
    def episode_length(self) -> NDArray[numpy.int64]: ...
    @property
    def episode_index(self) -> NDArray[numpy.int64]: ...

class DeviceArray:
    """Memory owned by the native core on a CUDA device; view it with torch.from_dlpack or
    cupy.from_dlpack (no copy), or copy it to the host with numpy(). Not constructible from
    Python."""

    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> str:
        """numpy's name of the element type (``float32``, ``int64``, ``bool``, ...)."""
    @property
    def device(self) -> str:
        """``cuda:N``."""
    @property
    def __cuda_array_interface__(self) -> dict[str, Any]: ...
    def __dlpack__(self, **kwargs: Any) -> CapsuleType:
        """A DLPack capsule (the unversioned ABI); keyword arguments such as ``stream`` are accepted
        and ignored."""
    def __dlpack_device__(self) -> tuple[int, int]:
        """``(2, N)``: DLPack's CUDA device type and the device ordinal."""
    def numpy(self) -> NDArray[Any]:
        """A host copy (waits for the legacy default stream)."""

class DeviceMarket:
    """A ``Market`` uploaded to CUDA device ``device``."""

    def __init__(self, market: Market, device: int) -> None: ...
    @property
    def device(self) -> int: ...

class CudaTradingEnv:
    """``TradingEnv`` on a CUDA device; work is queued on ``stream`` and nothing waits for it. An
    action outside {0, 1, 2} makes that env HOLD and is reported by ``check``."""

    def __init__(
        self,
        market: DeviceMarket,
        num_envs: int,
        episode_length: int,
        window: int,
        warmup: int,
        seed: int,
        random_start: bool,
        fee: float,
        slippage: float,
        mode: str,
        reward: RewardConfig,
        final_obs: bool = True,
        stream: int = 0,
    ) -> None: ...
    def reset(self, reseed: bool, seed: int, stream: int = 0) -> None: ...
    def step(self, actions: _DeviceArrayLike, stream: int = 0) -> None:
        """Step with integer ``actions [num_envs]`` of a dtype in ``ACTION_DTYPES`` in this env's
        device memory."""
    def check(self, stream: int = 0) -> None:
        """Raise ``InvalidArgumentError`` if an action since the last check was outside {0, 1, 2}."""
    @property
    def device(self) -> int: ...
    @property
    def seed(self) -> int: ...
    def buffers(self) -> dict[str, DeviceArray]:
        """The env's device buffers by name: ``obs``, ``final_obs`` (when kept), ``reward``,
        ``terminated``, ``truncated``, ``episode_done``, ``bar``, ``episode_return``,
        ``episode_length``, ``episode_index``, ``account.<field>`` and ``term.<name>``."""
