"""The failure types every layer shares, by what they stop.

- ``RunFatal``: the run cannot go on (an unreadable manifest, an output root that cannot
  be written, weights that cannot be found). The CLI prints it in one line and exits 2;
  nothing is generated.
- ``ReplicaFatal``: one replica cannot serve (the model does not fit the GPUs it was
  given, its GPU is lost: a CUDA error, a device-side assert, memory still exhausted after
  freeing it). From an actor's constructor: Ray replaces the actor a couple of times
  (``batch.stage.configure_data_context``), then the run fails. From a job: the replica's
  process ends without writing a row, Ray Data starts a new one and hands it the job again
  (``JobRunner`` bounds how often, ``MAX_DISPATCH_ATTEMPTS``).
- ``RowError``: one job cannot be made (an input that is missing or cannot be decoded).
  Never escapes ``JobRunner.run``: it becomes a failed results row whose ``error`` is the
  message, so the message names the field, the value and the fix.

Every message says what to change; an error a user cannot act on is a bug.
"""

from __future__ import annotations

# The exit codes of every ltx-ray command (and of `ltx-ray submit`, which relays the run's).
EXIT_OK, EXIT_ROWS_FAILED, EXIT_FATAL = 0, 1, 2


class RunFatal(Exception):
    """Stops the whole run before any row is generated (exit code 2)."""


class ReplicaFatal(Exception):
    """Stops one replica; the run fails once Ray has given up replacing it."""


class DeviceLost(ReplicaFatal):
    """The replica's accelerator can no longer be trusted; a fresh process may get a good one."""


class RowError(Exception):
    """Fails one row; the rest of the run goes on."""


# What a CUDA failure says: after one of these the process's CUDA context is unusable, so every
# later job on the replica would fail too. Matched in the message because torch raises them as
# plain RuntimeErrors (torch.AcceleratorError on newer releases, same messages).
DEVICE_LOST_MARKERS = ("CUDA error", "device-side assert", "illegal memory access", "CUBLAS_STATUS_", "CUDNN_STATUS_",
                       "cuDNN error", "NCCL error", "uncorrectable ECC error", "unspecified launch failure")


def replica_fatal(exc: BaseException) -> bool:
    """Whether ``exc`` means this replica, not this job, is broken (a row error never is, even
    when its message quotes a CUDA failure, as the row of a job that broke three replicas does)."""
    if isinstance(exc, RowError):
        return False
    return isinstance(exc, ReplicaFatal) or any(marker in str(exc) for marker in DEVICE_LOST_MARKERS)


def out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (and torch's other OutOfMemoryErrors), without importing torch."""
    return type(exc).__name__ == "OutOfMemoryError"


class ManifestError(RunFatal):
    """A manifest that cannot be read at all: the run stops before any GPU starts."""


class RecipeError(RunFatal):
    """A recipe that cannot be used (bad YAML, bad fields, columns the manifest lacks)."""


class OutputNotWritable(RunFatal):
    """``--out`` cannot be written."""


class ModelNotFound(RunFatal):
    """The weights cannot be found or loaded."""


class ReplicaStartFailed(RunFatal):
    """No replica of the run could start: the model cannot load (or be placed) anywhere."""


class PrecisionError(RunFatal):
    """A dtype the model cannot run in (float16 on bfloat16-trained weights)."""


class PlacementError(ReplicaFatal):
    """The model cannot be placed on the replica's devices with the chosen options."""


class InputError(RowError):
    """A job's input cannot be used; the message names the field, the value and the fix."""
