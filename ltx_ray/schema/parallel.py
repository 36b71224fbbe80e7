"""How one replica splits one clip over several ranks (issue 18): pure data, no torch.

A replica with ``ranks > 1`` is an actor group: ``ranks`` processes in one process group
(nccl on GPUs, gloo on CPU). Every rank runs the same job through the same engine; the
engine splits the transformer's work by ``mode``; rank 0 alone decodes, muxes and writes.

- ``ulysses``: sequence parallel; each rank holds 1/ranks of the video tokens and an
  all-to-all swaps the token split for a head split around attention.
- ``ring``: sequence parallel; keys and values pass around the ranks.
- ``cfg``: the guidance passes (conditional, unconditional, STG, modality) on different ranks.
- ``cfg-ulysses``: CFG over 2 groups of ranks, Ulysses inside each (4 cards = 2 x 2).
- ``none``: one rank (the default).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ParallelMode = Literal["none", "ulysses", "ring", "cfg", "cfg-ulysses"]
PARALLEL_HELP = ("how a replica of several ranks splits one clip: ulysses or ring (sequence parallel: the video "
                 "tokens over the ranks), cfg (the guidance passes on different ranks), cfg-ulysses (CFG over two "
                 "groups, Ulysses inside each; 4 ranks = 2 x 2) or none")


class Parallel(BaseModel):
    """The parallel layout of one replica, recorded in every sidecar as ``generation.parallel``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: ParallelMode = Field(default="none", description=PARALLEL_HELP)
    ranks: int = Field(default=1, ge=1, description="Processes (GPUs, or CPU ranks with --device cpu) in one replica")

    @model_validator(mode="after")
    def _fits(self):
        if self.mode == "none" and self.ranks != 1:
            raise ValueError(f"parallel mode none runs on 1 rank, not {self.ranks}; name a mode "
                             "(ulysses, ring, cfg, cfg-ulysses) or use 1 rank")
        if self.mode != "none" and self.ranks < 2:
            raise ValueError(f"parallel mode {self.mode} needs at least 2 ranks; got {self.ranks}")
        if self.mode == "cfg-ulysses" and self.ranks % 2:
            raise ValueError(f"cfg-ulysses splits the ranks in two CFG groups: use an even rank count, not {self.ranks}")
        return self

    @property
    def cfg_degree(self) -> int:
        return {"cfg": self.ranks, "cfg-ulysses": 2}.get(self.mode, 1)

    @property
    def sequence_degree(self) -> int:
        return {"ulysses": self.ranks, "ring": self.ranks, "cfg-ulysses": self.ranks // 2}.get(self.mode, 1)
