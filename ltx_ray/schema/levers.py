"""The speed levers (issue 16): how a replica makes the same generation faster.

A profile carries its defaults (``ModelProfile.levers``, all off in the shipped profiles);
``--compile`` / ``--quantize`` / ``--fuse-stage2-lora`` / ``--batch-guidance`` (``RunConfig``,
``ServeArgs``) override them for a run or a server; the replica records the values it ran
with in every sidecar (``model.levers``). ``--attention`` is the fifth lever, older than this
module (``job/build.py``).

Pure data: ``ltx-ray plan`` and ``validate`` read it without torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Quantize = Literal["none", "fp8"]

COMPILE_HELP = ("torch.compile the transformer's repeated blocks (regional compile, dynamic over the token count; "
                "the compiled kernels are cached under the model cache, so later replicas reuse them)")
QUANTIZE_HELP = ("fp8: the transformer blocks' attention and feed-forward linears in float8 (torchao, per-row "
                 "scales, float8 activations too); needs a CUDA GPU of compute capability 8.9 or newer (L4, L40S, "
                 "H100, H200, B200) and --dtype bfloat16; anything else is a fatal error before any row")
FUSE_HELP = ("fuse the stage-2 LoRAs into the transformer's weights while stage 2 runs (no LoRA matmuls there), "
             "then put the saved weights back, so the next row runs the base weights bit for bit")
BATCH_HELP = ("run the spatio-temporal guidance pass in the same transformer call as the conditional (and "
              "classifier-free) pass, as one batch; modality-isolation guidance stays a call of its own")


class Levers(BaseModel):
    """What a replica runs with: each lever leaves the recipe alone and changes only how fast it runs
    (fp8 also changes the numbers, within float8's precision)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    compile: bool = Field(default=False, description=COMPILE_HELP)
    quantize: Quantize = Field(default="none", description=QUANTIZE_HELP)
    fuse_stage2_lora: bool = Field(default=False, description=FUSE_HELP)
    batch_guidance: bool = Field(default=False, description=BATCH_HELP)


def _unset(help_text: str) -> str:
    return help_text + "; default: the profile's (off in every shipped profile)"


class LeverFlags(BaseModel):
    """The levers as a run's or a server's settings: None keeps the profile's value."""

    compile: bool | None = Field(default=None, description=_unset(COMPILE_HELP))
    quantize: Quantize | None = Field(default=None, description=_unset(QUANTIZE_HELP))
    fuse_stage2_lora: bool | None = Field(default=None, description=_unset(FUSE_HELP))
    batch_guidance: bool | None = Field(default=None, description=_unset(BATCH_HELP))

    def lever_flags(self) -> dict:
        """The four settings by name (to hand on to a ``RunnerSpec``)."""
        return {name: getattr(self, name) for name in LeverFlags.model_fields}

    def levers(self, defaults: Levers) -> Levers:
        """``defaults`` (a profile's) with every setting that is not None in its place."""
        return defaults.model_copy(update={k: v for k, v in self.lever_flags().items() if v is not None})


LEVER_FLAGS = list(LeverFlags.model_fields)
