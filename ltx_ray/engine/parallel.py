"""One clip's transformer work split over the ranks of a process group (issue 18): CFG and Ulysses.

Every rank runs the same job with the same seeds (SPMD); the split lives inside the
transformer call, so the pipeline's loop, its scheduler and its noise are the same on every
rank and every rank ends each call with the whole prediction (rank 0's frames are a
1-process run's).

- CFG (``cfg_degree`` > 1): a call with at least that many batch rows (the negative and
  positive prompt rows, and the STG row that --batch-guidance adds) runs each rank's share of
  the rows, then ``all_gather``s the predictions. diffusers' loop makes the STG and the
  modality passes as two 1-row calls, one after the other, on the same inputs but for
  ``isolate_modalities`` and the STG blocks; where the step makes both (``pair_modality``), the
  STG call runs on the even CFG groups while the odd ones run the modality pass it predicts,
  and the modality call that follows is answered from that (when its inputs are exactly the
  predicted ones; as guidance.py answers the batched STG row). So LTX-2.3's 4 passes a step
  take 2 passes' time on 2 ranks. Any other 1-row call (stage 2, no guidance) runs whole on
  every CFG group.
- Ulysses (``sequence_degree`` > 1), following LTX-2's own ``SequenceParallelModelWrapper``
  (ltx-core ``multigpu/transformer/sequence_parallel.py``): the video tokens are split before
  the blocks, the video self-attention (``attn1``) and the video-to-audio cross-attention run
  over all tokens, and the video prediction is gathered after ``proj_out``.
  * The token split is made on the *inputs*: ``hidden_states``, per-token ``timestep``,
    ``video_keyframes_mask`` and ``video_coords`` (computed here when the caller leaves them
    to the model). The RoPE tables are built inside ``forward`` from the split coordinates,
    so they are split with the tokens whatever their layout. diffusers' ``_cp_plan`` instead
    splits the tables' output at dim 1, which for LTX-2's split RoPE ([B, heads, T, r]) is
    the head dim: the size 2 vs 4 error in ``apply_split_rotary_emb`` under Ulysses 2.
    Splitting the coordinates is the fix that could go upstream.
  * ``attn1``: diffusers' own Ulysses kernel (``TemplatedUlyssesAnythingAttention`` in
    attention_dispatch.py, reached through the processor's ``_parallel_config``): all-to-all
    from a token split to a head split, attention over every token, all-to-all back. Its
    "anything" form takes uneven token splits, so a token count that the ranks do not divide
    needs no padding (the official wrapper pads and masks the padded keys instead).
  * Audio tokens are replicated, not split: an LTX-2 clip has ~25 audio tokens a second
    against thousands of video tokens, so splitting them saves nothing, and whole audio on
    every rank keeps audio self-attention, audio-text and audio-to-video attention local.
    The one place audio needs every video token, video-to-audio attention (queries: audio,
    keys: video), gathers the video keys' hidden states and RoPE tables first; every rank
    then computes the same audio prediction, so audio needs no gather at the end. The
    official wrapper keeps audio whole too, but in that attention it all-to-alls the projected
    video keys and values to a head split, takes its heads of the audio queries and all-gathers
    the heads after (``AudioAll2AllAttention``): fewer bytes moved and no repeated work, where
    here every rank projects every video token's keys and values and attends over all heads
    (a diffusers processor cannot be entered between its projections and its kernel but through
    ``_parallel_config``, whose Ulysses kernel splits the queries' tokens too).
- ``cfg-ulysses``: CFG over ``cfg_degree`` groups of ranks, Ulysses inside each group (the
  mesh ``(cfg, ring=1, ulysses)``).
- ``ring``: the same token split, with diffusers' ring kernel (``TemplatedRingAnythingAttention``:
  every rank's keys and values gathered, attention chunk by chunk, merged by log-sum-exp) in
  place of the all-to-all: no head-count limit. It needs an attention backend that returns the
  log-sum-exp, ``--attention flash`` or ``sage`` on GPUs; the native one (and so the CPU) is
  refused with a clear error. Not run here: this machine has no GPU.

Not split: the IC-LoRA ``video_self_attention_mask`` (control rows) is refused under sequence
parallel, as a dense [T, T] mask the head-split kernel cannot take per rank.
"""

from __future__ import annotations

import copy
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ltx_ray.engine.conditioning import forward_replaced
from ltx_ray.engine.guidance import BATCHED, as_output, same_row
from ltx_ray.schema.parallel import Parallel

# Per-row arguments of LTX2VideoTransformer3DModel.forward that the CFG split slices.
_ROWS = (*BATCHED, "perturbation_mask")


@dataclass
class Layout:
    """This rank's place in a parallel replica: its CFG group and its sequence (Ulysses) group."""

    parallel: Parallel
    cfg_group: object | None  # None where cfg_degree is 1
    cfg_rank: int
    seq_group: object | None  # None where sequence_degree is 1
    seq_rank: int
    attention_config: object | None  # diffusers' ParallelConfig for attn1's processors


def parallel_record(parallel: Parallel) -> dict:
    """What the sidecar records as ``generation.parallel``."""
    return {"mode": parallel.mode, "ranks": parallel.ranks, "cfg_degree": parallel.cfg_degree,
            "sequence_degree": parallel.sequence_degree}


# Attention backends whose diffusers kernels return the log-sum-exp that ring attention merges by.
RING_BACKENDS = ("flash", "sage")


def make_layout(parallel: Parallel, device: torch.device, heads: int, attention: str = "native") -> Layout | None:
    """The process groups for ``parallel`` (None for one rank). Every rank calls it, in the same
    order: building the groups is collective. ``heads``: the transformer's video attention heads;
    ``attention``: its diffusers backend."""
    if parallel.ranks == 1:
        return None
    ring = parallel.mode == "ring"
    if ring and attention not in RING_BACKENDS:
        raise ValueError(f"parallel mode ring merges attention chunks by their log-sum-exp, which the {attention} "
                         f"attention backend does not return: use --attention {' or '.join(RING_BACKENDS)} (CUDA "
                         "GPUs), or parallel mode ulysses")
    seq = parallel.sequence_degree
    if seq > 1 and not ring and heads % seq:
        raise ValueError(f"Ulysses over {seq} ranks splits the {heads} video attention heads evenly; "
                         f"use a sequence degree that divides {heads}")
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"parallel mode {parallel.mode} on {parallel.ranks} ranks needs the default torch.distributed "
                           "process group initialised first (init_process_group: gloo on CPU, nccl on GPUs), one "
                           "process a rank; none is")
    if dist.get_world_size() != parallel.ranks:
        raise ValueError(f"parallel asks for {parallel.ranks} ranks but the process group has {dist.get_world_size()}")
    from torch.distributed.device_mesh import init_device_mesh

    # On CPU the Ulysses group is named "cpu:gloo": diffusers' gather_size_by_comm looks for "cpu"
    # in the backend's name and otherwise puts its size exchange on the accelerator.
    split = "ring" if ring else "ulysses"  # the mesh dimension the tokens are split over
    override = {split: "cpu:gloo"} if device.type == "cpu" and seq > 1 else None
    shape = (parallel.cfg_degree, seq, 1) if ring else (parallel.cfg_degree, 1, seq)
    mesh = init_device_mesh(device.type, shape, mesh_dim_names=("cfg", "ring", "ulysses"), backend_override=override)
    config = None
    if seq > 1:
        from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig

        # Set up by hand: diffusers' _resolve_parallel_config picks the device with
        # torch.accelerator.device_count(), which divides by zero on CPU. "anything": uneven token splits.
        kernel = dict(ring_degree=seq, ring_anything=True) if ring else dict(ulysses_degree=seq, ulysses_anything=True)
        config = ParallelConfig(context_parallel_config=ContextParallelConfig(**kernel))
        config.setup(dist.get_rank(), dist.get_world_size(), device, mesh=mesh["ring", "ulysses"])
    return Layout(
        parallel=parallel,
        cfg_group=mesh["cfg"].get_group() if parallel.cfg_degree > 1 else None,
        cfg_rank=mesh["cfg"].get_local_rank(),
        seq_group=mesh[split].get_group() if seq > 1 else None,
        seq_rank=mesh[split].get_local_rank(),
        attention_config=config,
    )


def refusal(layout: Layout | None, task: str) -> str | None:
    """Why a row of ``task`` cannot run on this layout (before any step runs); None when it can."""
    if layout is not None and layout.seq_group is not None and task == "control":
        return (f"task control on parallel mode {layout.parallel.mode}: the IC-LoRA's video self-attention mask is "
                "not split over the ranks; run control rows on a replica with parallel mode cfg or none")
    return None


def token_split(tokens: int, ranks: int) -> list[int]:
    """Tokens per rank, in rank order: as even as can be (the first ranks take one more)."""
    if tokens < ranks:
        raise ValueError(f"sequence parallel over {ranks} ranks needs at least {ranks} video tokens a call; "
                         f"this call has {tokens}: use fewer ranks or a larger clip")
    return [tokens // ranks + (r < tokens % ranks) for r in range(ranks)]


def gather(x: torch.Tensor, sizes: list[int], dim: int, group) -> torch.Tensor:
    """The ranks' pieces of ``x`` along ``dim`` (sizes in rank order), whole on every rank."""
    most = max(sizes)
    if x.shape[dim] < most:  # all_gather takes equal sizes: pad, then cut each piece back
        pad = list(x.shape)
        pad[dim] = most - x.shape[dim]
        x = torch.cat([x, x.new_zeros(pad)], dim=dim)
    pieces = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(pieces, x.contiguous(), group=group)
    return torch.cat([p.narrow(dim, 0, n) for p, n in zip(pieces, sizes)], dim=dim)


@contextmanager
def parallel_transformer(transformer, layout: Layout | None, *, pair_modality: bool = False):
    """Within the block, ``transformer``'s calls are split over ``layout``'s ranks; no-op for None.
    ``pair_modality``: each STG call is followed by a modality call (the pipeline guides with both)."""
    if layout is None:
        yield
        return
    with ExitStack() as stack:
        if layout.seq_group is not None:
            stack.enter_context(_sequence_split(transformer, layout))
        if layout.cfg_group is not None:  # outside the sequence split: each CFG group splits its rows' tokens
            stack.enter_context(_cfg_split(transformer, layout, pair_modality))
        yield


@contextmanager
def _cfg_split(transformer, layout: Layout, pair_modality: bool):
    forward = transformer.forward
    degree = layout.parallel.cfg_degree
    pending: dict = {}  # the modality pass run beside the last STG call: its inputs and its outputs

    def cfg_forward(*args, **kw):
        rows = kw["hidden_states"].shape[0] if "hidden_states" in kw else 0
        if not args and pending and same_row(pending["inputs"], kw):
            out = pending["out"]
            pending.clear()
            return as_output(out, kw)
        if not args and rows < degree and pair_modality and _stg_call(kw):
            modality = dict(kw, isolate_modalities=True, spatio_temporal_guidance_blocks=None, perturbation_mask=None)
            video, audio = forward(**dict(modality if layout.cfg_rank % 2 else kw, return_dict=False))
            videos, audios = _all(video, layout.cfg_group), _all(audio, layout.cfg_group)
            pending.clear()
            pending.update(inputs=modality, out=(videos[1], audios[1]))
            return as_output((videos[0], audios[0]), kw)
        if args or rows < degree:
            return forward(*args, **kw)
        sizes = token_split(rows, degree)
        start = sum(sizes[:layout.cfg_rank])
        mine = dict(kw, return_dict=False)
        for name in _ROWS:
            value = kw.get(name)
            if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == rows:
                mine[name] = value[start:start + sizes[layout.cfg_rank]]
        video, audio = forward(**mine)
        return as_output((gather(video, sizes, 0, layout.cfg_group), gather(audio, sizes, 0, layout.cfg_group)), kw)

    with forward_replaced(transformer, cfg_forward):
        yield


def _stg_call(kw: dict) -> bool:
    """diffusers' STG pass: STG blocks, no mask (every row perturbed), modalities not isolated."""
    return bool(kw.get("spatio_temporal_guidance_blocks")) and kw.get("perturbation_mask") is None \
        and not kw.get("isolate_modalities")


def _all(x: torch.Tensor, group) -> list[torch.Tensor]:
    pieces = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(pieces, x.contiguous(), group=group)
    return pieces


@contextmanager
def _sequence_split(transformer, layout: Layout):
    forward = transformer.forward
    degree = layout.parallel.sequence_degree
    call: dict = {}  # the token split of the call under way, for the video-to-audio gather

    def sequence_forward(*args, **kw):
        if args:
            raise TypeError("sequence parallel wraps keyword calls of the transformer (as the LTX2 pipelines make)")
        if kw.get("video_self_attention_mask") is not None:
            raise ValueError("sequence parallel does not take a video self-attention mask (IC-LoRA control rows); "
                             "run control rows with parallel mode cfg or none")
        hidden = kw["hidden_states"]
        batch, tokens = hidden.shape[:2]
        sizes = call["sizes"] = token_split(tokens, degree)
        start, size = sum(sizes[:layout.seq_rank]), sizes[layout.seq_rank]
        coords = kw.get("video_coords")
        if coords is None:
            coords = transformer.rope.prepare_video_coords(batch, kw["num_frames"], kw["height"], kw["width"],
                                                           hidden.device, fps=kw.get("fps", 24.0))
        mine = dict(kw, hidden_states=hidden[:, start:start + size], video_coords=coords[:, :, start:start + size],
                    return_dict=False)
        if mine.get("audio_timestep") is None:  # the model falls back on the video timestep: the whole one
            mine["audio_timestep"] = kw["timestep"]
        for name in ("timestep", "video_keyframes_mask"):  # per-token where given per token
            value = kw.get(name)
            if isinstance(value, torch.Tensor) and value.ndim >= 2 and value.shape[1] == tokens:
                mine[name] = value[:, start:start + size]
        video, audio = forward(**mine)
        return as_output((gather(video, sizes, 1, layout.seq_group), audio), kw)

    with ExitStack() as stack:
        for block in transformer.transformer_blocks:
            stack.enter_context(_ulysses_processor(block.attn1, layout.attention_config))
            stack.enter_context(_whole_video_keys(block.video_to_audio_attn, call, layout.seq_group))
        stack.enter_context(forward_replaced(transformer, sequence_forward))
        yield


@contextmanager
def _ulysses_processor(attn, config):
    """``attn``'s processor, a copy that runs diffusers' Ulysses (or ring) kernel (the original may be shared)."""
    original = attn.processor
    processor = copy.copy(original)
    processor._parallel_config = config
    attn.processor = processor
    try:
        yield
    finally:
        attn.processor = original


@contextmanager
def _whole_video_keys(attn, call: dict, group):
    """Video-to-audio attention: audio queries (whole on every rank) over every video token, so its
    keys' hidden states and RoPE tables are gathered from the ranks first."""

    def whole_keys(hidden_states, encoder_hidden_states=None, attention_mask=None, query_rotary_emb=None,
                   key_rotary_emb=None, **kw):
        sizes = call["sizes"]
        keys = gather(encoder_hidden_states, sizes, 1, group)
        if key_rotary_emb is not None:  # split RoPE tables are [B, heads, T, r]; interleaved ones [B, T, d]
            key_rotary_emb = tuple(gather(t, sizes, 2 if t.ndim == 4 else 1, group) for t in key_rotary_emb)
        return attn_forward(hidden_states, encoder_hidden_states=keys, attention_mask=attention_mask,
                            query_rotary_emb=query_rotary_emb, key_rotary_emb=key_rotary_emb, **kw)

    attn_forward = attn.forward
    with forward_replaced(attn, whole_keys):
        yield
