"""The failure types every layer shares, by what they stop.

- ``RunFatal``: the run cannot go on (an unreadable manifest, an output root that cannot
  be written, weights that cannot be found). The CLI prints it in one line and exits 2;
  nothing is generated.
- ``ReplicaFatal``: one replica cannot serve (the model does not fit the GPUs it was
  given). Raised from an actor's constructor: Ray replaces the actor a couple of times
  (``batch.stage.configure_data_context``), then the run fails.
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


class RowError(Exception):
    """Fails one row; the rest of the run goes on."""


class ManifestError(RunFatal):
    """A manifest that cannot be read at all: the run stops before any GPU starts."""


class RecipeError(RunFatal):
    """A recipe that cannot be used (bad YAML, bad fields, columns the manifest lacks)."""


class OutputNotWritable(RunFatal):
    """``--out`` cannot be written."""


class ModelNotFound(RunFatal):
    """The weights cannot be found or loaded."""


class PrecisionError(RunFatal):
    """A dtype the model cannot run in (float16 on bfloat16-trained weights)."""


class PlacementError(ReplicaFatal):
    """The model cannot be placed on the replica's devices with the chosen options."""


class InputError(RowError):
    """A job's input cannot be used; the message names the field, the value and the fix."""
