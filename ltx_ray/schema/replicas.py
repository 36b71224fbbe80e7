"""``--replicas N`` (a fixed pool) or ``MIN:MAX`` (an autoscaling one), as data: a batch run's
actor pool (``ltx_ray.batch.pool``) and the Serve app's generator replicas read the same value.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

RANGE = re.compile(r"\s*(\d+)\s*(?::\s*(\d+)\s*)?")


class Replicas(BaseModel):
    """How many generation actors a run may hold: ``min`` == ``max`` is a fixed pool."""

    model_config = ConfigDict(frozen=True)

    min: int = Field(ge=1, description="replicas started before the first job, and kept to the end of the jobs")
    max: int = Field(ge=1, description="replicas the pool may grow to while jobs wait")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value):
        """``4`` / ``"4"``: a fixed pool of 4; ``"1:8"``: 1 to 8. Bad values name the fix."""
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number of replicas; give N or MIN:MAX (e.g. 4, or 1:8)")
        if isinstance(value, int):
            value = str(value)
        if not isinstance(value, str):
            return value  # {"min": .., "max": ..} or a Replicas
        match = RANGE.fullmatch(value)
        if match is None:
            raise ValueError(f"{value!r} is not N or MIN:MAX; give a whole number (4: a fixed pool) or a range "
                             "(1:8: an autoscaling pool)")
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        if low < 1:
            fix = f"MIN >= 1 (e.g. 1:{high})" if match[2] is not None and high >= 1 else "at least 1"
            raise ValueError(f"{value!r}: a run needs at least one replica to make progress; give {fix}")
        if low > high:
            raise ValueError(f"{value!r}: MIN is more than MAX; give the smaller number first ({high}:{low})")
        return {"min": low, "max": high}

    @model_validator(mode="after")
    def _ordered(self):
        if self.min > self.max:
            raise ValueError(f"min {self.min} is more than max {self.max}")
        return self

    @model_serializer
    def _as_flag(self) -> int | str:
        # What `--replicas` takes, so a dumped RunConfig validates again (and a fixed pool
        # dumps as the plain int it always was).
        return self.min if self.fixed else f"{self.min}:{self.max}"

    @property
    def fixed(self) -> bool:
        return self.min == self.max

    def __str__(self) -> str:
        return str(self._as_flag())

    def describe(self) -> str:
        """For log lines: "4 replica(s)" or "1 to 8 replicas (autoscaling)"."""
        if self.fixed:
            return f"{self.min} replica(s)"
        return f"{self.min} to {self.max} replicas (autoscaling: more while jobs wait and the cluster has room)"
