"""Model profiles: one typed recipe per LTX-2 generation and variant, with the official values.

A profile is what a model *is* for generation: its steps, its guidance stack, its noise
schedule, its negative prompt, where its stage-2 LoRA lives. It is detected from the loaded
configs (``engine/weights.py``), or named in the model folder's ``ltx_ray_model.json``
(``{"profile": "ltx-2.3-distilled"}``) or with ``--profile``.

Sources (each value below names one):
- [C] Lightricks/LTX-2 ``packages/ltx-pipelines/src/ltx_pipelines/utils/constants.py``
  (``LTX_2_PARAMS``, ``LTX_2_3_PARAMS``, ``LTX_2_4_PARAMS``, ``DEFAULT_NEGATIVE_PROMPT``,
  the sigma lists);
- [D] Lightricks/LTX-2 ``ltx_pipelines/distilled.py`` (``DistilledPipeline``: one unguided
  ``SimpleDenoiser`` pass per step; ancestral Euler from 2.5) and ``ti2vid_two_stages.py``
  (stage 2 with the distilled LoRA at strength 1.0, unguided);
- [S] Lightricks/LTX-2 ``ltx_core/components/schedulers.py`` ``LTX2Scheduler.execute``;
- [X] diffusers 0.42.1 ``models/transformers/transformer_ltx2.py`` (``use_cross_timestep``:
  "True is the LTX-2.3/2.5 behavior; False is the legacy LTX-2.0 behavior");
- [H] diffusers docs ``docs/source/en/api/pipelines/ltx2.md`` (file names of the stage-2
  LoRAs, "LTX-2.5", "Full / SFT transformer") and Lightricks/LTX-2.3 ``MODELS-LTX-2.3.md``.

This module is pure data (pydantic): ``ltx-ray plan`` and ``validate`` read it without torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ltx_ray.schema.levers import Levers

Schedule = Literal["ltx2_dev", "distilled"]


class Guider(BaseModel):
    """One modality's guidance (ltx-core ``MultiModalGuiderParams``): what each delta costs is one pass."""

    model_config = ConfigDict(frozen=True)

    cfg: float = Field(description="classifier-free guidance scale; 1 = off")
    stg: float = Field(description="spatio-temporal (perturbed-attention) guidance scale; 0 = off")
    rescale: float = Field(description="guidance rescale towards the conditional std; 0 = off")
    modality: float = Field(description="modality-isolation guidance scale; 1 = off")

    @property
    def is_off(self) -> bool:
        return self.cfg <= 1.0 and self.stg == 0.0 and self.modality <= 1.0


UNGUIDED = Guider(cfg=1.0, stg=0.0, rescale=0.0, modality=1.0)
# [C] LTX_2_PARAMS video_guider_params / audio_guider_params (LTX-2.3 and 2.4 inherit them).
DEV_VIDEO = Guider(cfg=3.0, stg=1.0, rescale=0.7, modality=3.0)
DEV_AUDIO = Guider(cfg=7.0, stg=1.0, rescale=0.7, modality=3.0)

# [C] DEFAULT_NEGATIVE_PROMPT, exactly (diffusers' copy lacks the first five tags).
OFFICIAL_NEGATIVE_PROMPT = (
    "has_subtitles, has_blurbox, transition from black, transition to black, speech_ending_short, "
    "blurry, out of focus, overexposed, underexposed, low contrast, washed out colors, excessive noise, "
    "grainy texture, poor lighting, flickering, motion blur, distorted proportions, unnatural skin tones, "
    "deformed facial features, asymmetrical face, missing facial features, extra limbs, disfigured hands, "
    "wrong hand count, artifacts around text, inconsistent perspective, camera shake, incorrect depth of "
    "field, background too sharp, background clutter, distracting reflections, harsh shadows, inconsistent "
    "lighting direction, color banding, cartoonish rendering, 3D CGI look, unrealistic materials, uncanny "
    "valley effect, incorrect ethnicity, wrong gender, exaggerated expressions, wrong gaze direction, "
    "mismatched lip sync, silent or muted audio, distorted voice, robotic voice, echo, background noise, "
    "off-sync audio, incorrect dialogue, added dialogue, repetitive speech, jittery movement, awkward "
    "pauses, incorrect timing, unnatural transitions, inconsistent framing, tilted camera, flat lighting, "
    "inconsistent tone, cinematic oversaturation, stylized filters, or AI artifacts."
)


class ModelProfile(BaseModel):
    """A model's generation recipe. The defaults are LTX-2.0 dev's ([C] ``LTX_2_PARAMS``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "ltx-2.0-dev"
    generation: Literal["tiny", "ltx-2.0", "ltx-2.3", "ltx-2.4", "ltx-2.5"] = "ltx-2.0"
    variant: Literal["dev", "distilled", "full"] = "dev"
    steps: int = 40  # [C] num_inference_steps
    fps: float = 24.0  # [C] frame_rate
    video: Guider = DEV_VIDEO
    audio: Guider = DEV_AUDIO
    stg_blocks: list[int] = Field(default_factory=lambda: [29])  # [C] stg_blocks
    negative_prompt: str = OFFICIAL_NEGATIVE_PROMPT  # [C]
    cross_timestep: bool = False  # [X]
    image_crf: int = 33  # [C] default_image_crf (LTX_2_4_IMAGE_CRF = 18 from 2.4)
    schedule: Schedule = "ltx2_dev"  # [S] dev; [C] DISTILLED_SIGMA_VALUES for distilled
    sampler: Literal["euler", "euler_ancestral"] = "euler"  # [D]
    distilled_lora: str | None = "ltx-2-19b-distilled-lora-384.safetensors"  # [H] two-stage example, repo root
    upsampler: str = "latent_upsampler"  # [H] subfolder of every generation's repo
    transformer_subfolder: str = "transformer"  # 2.5 full: transformer_full [H]
    trained_dtype: Literal["bfloat16", "float32"] = "bfloat16"
    max_sequence_length: int = 1024  # diffusers LTX2Pipeline.__call__ default
    duration_head: bool = False  # [H] LTX-2.5 ships duration_head/, which seconds: auto needs
    diffusion_decoder: bool = False  # [H] and diffusion_decoder/, which decoder: diffusion needs
    # enhance_prompt: [D] "Prompt Enhancement": LTX-2.0 / 2.3's Gemma 3 text encoder rewrites the
    # prompt itself (with a Gemma 3 processor, which the repos do not ship); [D] "Prompt
    # Enhancement for LTX-2.5": 2.5 uses a separate Gemma 4 (prompt_enhancer + its processor).
    enhancer: Literal["text_encoder", "separate"] = "text_encoder"
    enhancer_repo: str = "google/gemma-3-12b-it-qat-q4_0-unquantized"  # [D] where the processor comes from
    # Speed levers on by default for this model (schema/levers.py); --compile etc. override them.
    levers: Levers = Levers()

    @property
    def guidance_scale(self) -> float:
        return self.video.cfg


def default_dtype(device: str) -> str:
    """bfloat16 on a GPU (what every LTX-2 checkpoint is trained and shipped in), float32 on the CPU."""
    return "bfloat16" if device.startswith("cuda") else "float32"


def precision_problem(dtype: str, profile: ModelProfile) -> str | None:
    """Why ``dtype`` cannot run ``profile``'s weights, or None."""
    if dtype == "float16" and profile.trained_dtype == "bfloat16":
        return (f"--dtype float16 on {profile.name}, a model trained in bfloat16: its activations overflow float16's "
                f"range (inf / NaN frames); use --dtype bfloat16 (or float32)")
    return None


def _distilled(base: ModelProfile, name: str, **kw) -> ModelProfile:
    # [D] DistilledPipeline: 8 distilled sigmas, one unguided pass per step, no LoRA in stage 2
    # (the transformer is distilled itself).
    return base.model_copy(update=dict(
        name=name, variant="distilled", steps=8, video=UNGUIDED, audio=UNGUIDED, schedule="distilled",
        distilled_lora=None, **kw,
    ))


LTX_2_0_DEV = ModelProfile()
LTX_2_0_DISTILLED = _distilled(LTX_2_0_DEV, "ltx-2.0-distilled")
# [C] LTX_2_3_PARAMS = replace(LTX_2_PARAMS, num_inference_steps=30, stg_blocks=[28]); [X] cross-timestep.
LTX_2_3_DEV = LTX_2_0_DEV.model_copy(update=dict(
    name="ltx-2.3-dev", generation="ltx-2.3", steps=30, stg_blocks=[28], cross_timestep=True,
    distilled_lora="ltx-2.3-22b-distilled-lora-384-1.1.safetensors",  # [H] MODELS-LTX-2.3.md
))
LTX_2_3_DISTILLED = _distilled(LTX_2_3_DEV, "ltx-2.3-distilled")
# [C] LTX_2_4_PARAMS = replace(LTX_2_3_PARAMS, default_image_crf=18): Lightricks' internal 2.4,
# what LTX-2.5 checkpoints map to; no public 2.4 layout exists, so it is only named, never detected.
LTX_2_4_DEV = LTX_2_3_DEV.model_copy(update=dict(name="ltx-2.4-dev", generation="ltx-2.4", image_crf=18))
# [H] LTX-2.5: transformer/ is the distilled DiT, transformer_full/ the SFT one; stage-2 LoRA at the root.
LTX_2_5_FULL = LTX_2_4_DEV.model_copy(update=dict(
    name="ltx-2.5-full", generation="ltx-2.5", variant="full", transformer_subfolder="transformer_full",
    duration_head=True, diffusion_decoder=True, enhancer="separate", enhancer_repo="google/gemma-4-E2B-it",
    distilled_lora="ltx-2.5-22b-distilled-lora-450-bf16.safetensors",
))
# [D] ANCESTRAL_SAMPLER_SINCE_VERSION = (2, 5): stage 1 samples with ancestral Euler (eta 1).
LTX_2_5_DISTILLED = _distilled(LTX_2_5_FULL, "ltx-2.5-distilled", transformer_subfolder="transformer",
                               sampler="euler_ancestral")
# ltx-ray's own tiny model: 2 transformer blocks, so STG perturbs block 1; 4 steps keep CPU tests quick.
TINY = LTX_2_3_DEV.model_copy(update=dict(
    name="tiny", generation="tiny", steps=4, stg_blocks=[1], negative_prompt="", distilled_lora="loras/distilled.safetensors",
    trained_dtype="float32", max_sequence_length=128,
))

PROFILES: dict[str, ModelProfile] = {p.name: p for p in (
    TINY, LTX_2_0_DEV, LTX_2_0_DISTILLED, LTX_2_3_DEV, LTX_2_3_DISTILLED, LTX_2_4_DEV, LTX_2_5_DISTILLED, LTX_2_5_FULL,
)}


def ic_lora_recipe(profile: ModelProfile) -> ModelProfile:
    """What a control (IC-LoRA) row runs with: the distilled recipe, as the official ``ICLoraPipeline``
    (ltx-pipelines ``ic_lora.py``: ``DISTILLED_SIGMAS``, a ``SimpleDenoiser`` with no guidance,
    on the distilled transformer). On a dev profile the transformer is made distilled by its
    stage-2 LoRA, applied in stage 1 too (``Job.stage_1_lora``); the profile keeps its name."""
    return profile.model_copy(update=dict(steps=8, video=UNGUIDED, audio=UNGUIDED, schedule="distilled"))


def variant_profile(profile: ModelProfile, variant: str | None) -> ModelProfile | None:
    """The profile a row's ``variant`` runs with on a model loaded as ``profile``: itself without
    one, its sibling where the repo ships both DiTs (LTX-2.5: ``transformer/`` distilled,
    ``transformer_full/`` full), else None (2.0 / 2.3 ship one DiT per checkpoint)."""
    if variant is None or variant == profile.variant:
        return profile
    sibling = PROFILES.get(f"{profile.generation}-{variant}")
    both_shipped = profile.generation == "ltx-2.5"  # [H] the LTX-2.5-Diffusers repo holds both
    return sibling if sibling is not None and both_shipped else None
