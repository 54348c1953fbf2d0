"""The exceptions himari raises, native and Python alike.

The native core throws C++ exceptions that the bindings translate into these classes, so a
user catches one hierarchy whatever layer failed. Bad input is always a ``ValueError`` subclass
(the standard contract for "you passed something wrong"); a failing GPU is a ``RuntimeError``
subclass. The CLI maps ``UsageError``-like classes to exit code 2 and the rest to 1.
"""

from __future__ import annotations


class HimariError(Exception):
    """Base of every error himari raises on purpose."""


class InvalidArgumentError(HimariError, ValueError):
    """A value is outside its domain: NaN price, unknown mode, negative fee, bad action."""


class ShapeError(InvalidArgumentError):
    """An array has the wrong dtype, number of dimensions, extent or memory layout."""


class DeviceError(InvalidArgumentError):
    """An array lives on a device the call cannot use."""


class CudaError(HimariError, RuntimeError):
    """A CUDA runtime call failed; the message carries the failing call."""


class CudaUnavailableError(CudaError):
    """CUDA was requested but this build or machine cannot provide it."""


class DiskFullError(HimariError, OSError):
    """A write failed because the device (or the quota) is full; the message names the output,
    and the previous file, if any, is left intact."""


class DataError(HimariError, ValueError):
    """Input data is malformed; the message names the file, row and column where known."""


class ConfigError(HimariError, ValueError):
    """A configuration key is unknown or has the wrong type."""


class TrainingError(HimariError, RuntimeError):
    """Training failed at run time (a NaN loss, a method breaking the loop): exit code 1."""


__all__ = [
    "ConfigError",
    "CudaError",
    "CudaUnavailableError",
    "DataError",
    "DeviceError",
    "HimariError",
    "InvalidArgumentError",
    "ShapeError",
    "TrainingError",
]
