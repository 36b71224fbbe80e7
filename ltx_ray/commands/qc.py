"""``ltx-ray qc FILE.mp4 [--image IMG@FRAME ...] --json``: the quality checks on any video.

The last stdout line with ``--json`` is one JSON object: every check's score, threshold and
verdict and an overall ``pass``. Exit 0 when the video passes, 1 when a check fails, 2 when
the file or an image cannot be read.
"""

from __future__ import annotations

import io
import json


def _threshold(text: str) -> float | None:
    return None if text.lower() in ("off", "none", "null") else float(text)


def add_parser(sub) -> str:
    from ltx_ray.schema.qc import QCConfig

    defaults = QCConfig()
    p = sub.add_parser("qc", help="run the quality checks (motion, blank frames, audio, keyframe adherence) on an mp4")
    p.add_argument("video", help="the mp4 (local path or URI)")
    p.add_argument("--image", action="append", default=[], metavar="IMG@FRAME",
                   help="the image that frame FRAME should show (repeatable), e.g. front.png@0")
    p.add_argument("--expect-audio", action="store_true", help="fail when the file has no audio track")
    for flag, field in (("--min-motion", "min_motion"), ("--max-blank-fraction", "max_blank_fraction"),
                        ("--min-audio-dbfs", "min_audio_dbfs"), ("--min-keyframe-ssim", "min_keyframe_ssim")):
        p.add_argument(flag, type=_threshold, default=getattr(defaults, field),
                       help=f"{QCConfig.model_fields[field].description} Default {getattr(defaults, field)}; 'off' disables.")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on the last line")
    return "qc"


def main(args) -> int:
    import tempfile

    import av
    import fsspec
    from PIL import Image, UnidentifiedImageError
    from pydantic import ValidationError

    from ltx_ray.errors import InputError, RunFatal
    from ltx_ray.job.inputs import read_uri_bytes
    from ltx_ray.job.qc import check_video
    from ltx_ray.schema.qc import QCConfig

    try:
        config = QCConfig(min_motion=args.min_motion, max_blank_fraction=args.max_blank_fraction,
                          min_audio_dbfs=args.min_audio_dbfs, min_keyframe_ssim=args.min_keyframe_ssim)
    except ValidationError as exc:
        raise RunFatal("; ".join(f"--{e['loc'][0].replace('_', '-')}: {e['msg']}" for e in exc.errors())) from None
    references = []
    for spec in args.image:
        uri, sep, frame = spec.rpartition("@")
        if not sep or not frame.isdigit():
            raise RunFatal(f"--image {spec!r}: write IMAGE@FRAME, e.g. front.png@0")
        try:
            references.append((Image.open(io.BytesIO(read_uri_bytes(uri, "--image"))), int(frame)))
        except (InputError, UnidentifiedImageError) as exc:
            raise RunFatal(f"--image {spec!r}: {exc}") from None
    try:
        # PyAV reads local files; a video behind a URI is copied to a temporary file first.
        with tempfile.TemporaryDirectory(prefix="ltx-ray-qc-") as tmp:
            path = args.video
            if "://" in path:
                fs, remote = fsspec.core.url_to_fs(args.video)
                path = f"{tmp}/video.mp4"
                fs.get_file(remote, path)
            report = check_video(path, config, references, expect_audio=args.expect_audio or None)
    except (OSError, ValueError, av.error.FFmpegError) as exc:
        raise RunFatal(f"{args.video}: cannot be read as a video ({exc})") from None
    for name, check in report.checks.items():
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[check.passed]
        print(f"{name:16} {verdict:5} score={check.score} threshold={check.threshold}  {check.detail}")
    print(f"{'overall':16} {'pass' if report.passed else 'FAIL'}")
    if args.json:
        print(json.dumps({"video": args.video, **report.to_json_dict()}))
    return 0 if report.passed else 1
