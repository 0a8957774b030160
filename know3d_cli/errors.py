"""Errors raised anywhere in know3d, each with its documented exit code.

Stages raise; only `cli.main` catches, prints one line on stderr and exits with `exit_code`.

| code | meaning |
|------|---------|
| 0    | success |
| 1    | batch finished, some items failed |
| 2    | usage or configuration error |
| 3    | missing input or model files |
| 4    | runtime failure (no usable GPU, out of memory, generation failure, disk full) or anything unexpected |
| 130  | interrupted (Ctrl-C) |
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_BATCH_FAILURES = 1
EXIT_USAGE = 2
EXIT_MISSING = 3
EXIT_RUNTIME = 4
EXIT_INTERRUPTED = 130


def run_exit_code(*, failed: int, interrupted: bool, stopped: str | None) -> int:
    """The exit code of a command that runs many items (`batch`, `data build`): 130 when interrupted, 4 when it
    stopped early (e.g. the disk is full), 1 when some items failed, else 0."""
    if interrupted:
        return EXIT_INTERRUPTED
    if stopped is not None:
        return EXIT_RUNTIME
    return EXIT_BATCH_FAILURES if failed else EXIT_OK


class Know3dError(Exception):
    """Base class: a message that says what failed, which value, and the fix."""

    exit_code = EXIT_RUNTIME
    code = "error"  # stable machine-readable name, used in JSON output


class UsageError(Know3dError):
    """Bad flag combination or command-line value."""

    exit_code = EXIT_USAGE
    code = "invalid_arguments"


class ConfigError(Know3dError):
    """Unknown config key, invalid value, or inconsistent configuration."""

    exit_code = EXIT_USAGE
    code = "invalid_config"


class InputError(Know3dError):
    """An input image or manifest is missing, unreadable or unusable."""

    exit_code = EXIT_MISSING
    code = "bad_input"


class AssetError(InputError):
    """A 3D asset cannot be used: unreadable, unsupported format, empty, no faces, non-finite or absurd geometry.

    `reason` is a short stable name of the cause (see `know3d_cli.data.asset.ASSET_FAILURES`), recorded beside the
    message when a build skips the asset.
    """

    code = "bad_asset"

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class ModelMissingError(Know3dError):
    """A model (or adapter) needed by the run is not on disk."""

    exit_code = EXIT_MISSING
    code = "missing_model"


class CheckpointError(Know3dError):
    """A checkpoint exists but does not match the network it should build (json args, keys, shapes)."""

    exit_code = EXIT_MISSING
    code = "bad_checkpoint"


class OutputError(Know3dError):
    """The output location cannot be written."""

    exit_code = EXIT_USAGE
    code = "bad_output"


class BackendUnavailable(Know3dError):
    """A requested compute backend or device is not usable here."""

    exit_code = EXIT_RUNTIME
    code = "unsupported_runtime"


class GenerationError(Know3dError):
    """Generation ran but could not produce a usable result (e.g. empty geometry)."""

    exit_code = EXIT_RUNTIME
    code = "generation_failure"


class OutOfMemory(Know3dError):
    """The device ran out of memory."""

    exit_code = EXIT_RUNTIME
    code = "out_of_memory"


class WriteFailure(Know3dError):
    """Writing an output failed midway (disk full, I/O error); what was there before is kept."""

    exit_code = EXIT_RUNTIME
    code = "write_failure"

    def __init__(self, message: str, os_errno: int | None = None):
        super().__init__(message)
        self.os_errno = os_errno  # errno of the failed write, when known

    @property
    def disk_full(self) -> bool:
        return self.os_errno in (errno.ENOSPC, errno.EDQUOT)


class Interrupted(Know3dError):
    """The user pressed Ctrl-C (SIGINT)."""

    exit_code = EXIT_INTERRUPTED
    code = "interrupted"
