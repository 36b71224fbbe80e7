"""Rebuild manifests/demo.parquet and the product images it points to.

    python manifests/make_demo.py

The images are drawn here (simple product-like shapes), not copied from anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from ltx_ray.manifest import write_manifest

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "demo_images"


def draw_sneaker(angle: str, size=(768, 512)) -> Image.Image:
    """A red sneaker on a white table, seen from the front, side or back."""
    img = Image.new("RGB", size, (235, 235, 230))
    d = ImageDraw.Draw(img)
    w, h = size
    d.rectangle([0, int(h * 0.72), w, h], fill=(200, 195, 185))  # table
    if angle == "side":
        d.polygon([(w * 0.2, h * 0.7), (w * 0.25, h * 0.45), (w * 0.5, h * 0.4), (w * 0.8, h * 0.6), (w * 0.82, h * 0.7)], fill=(200, 30, 40))
        d.rectangle([w * 0.18, h * 0.68, w * 0.84, h * 0.74], fill=(250, 250, 250))  # sole
        for i in range(4):
            d.line([(w * (0.32 + 0.05 * i), h * 0.45), (w * (0.36 + 0.05 * i), h * 0.52)], fill=(255, 255, 255), width=4)
    else:
        cx = w * 0.5
        d.ellipse([cx - w * 0.12, h * 0.38, cx + w * 0.12, h * 0.72], fill=(200, 30, 40))
        d.rectangle([cx - w * 0.13, h * 0.68, cx + w * 0.13, h * 0.74], fill=(250, 250, 250))
        if angle == "front":
            d.ellipse([cx - w * 0.04, h * 0.42, cx + w * 0.04, h * 0.5], fill=(250, 250, 250))  # toe cap
        else:
            d.rectangle([cx - w * 0.02, h * 0.4, cx + w * 0.02, h * 0.6], fill=(30, 30, 30))  # heel tab
    return img


def draw_bottle(size=(512, 768)) -> Image.Image:
    """A green glass bottle with a label, portrait."""
    img = Image.new("RGB", size, (245, 240, 232))
    d = ImageDraw.Draw(img)
    w, h = size
    d.rectangle([w * 0.35, h * 0.3, w * 0.65, h * 0.85], fill=(40, 120, 60))
    d.rectangle([w * 0.44, h * 0.15, w * 0.56, h * 0.3], fill=(40, 120, 60))
    d.rectangle([w * 0.43, h * 0.1, w * 0.57, h * 0.15], fill=(180, 150, 60))
    d.rectangle([w * 0.35, h * 0.5, w * 0.65, h * 0.65], fill=(250, 245, 220))
    return img


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    for angle in ("front", "side", "back"):
        draw_sneaker(angle).save(IMAGES / f"sneaker_{angle}.png")
    draw_bottle().save(IMAGES / "bottle.png")

    rows = [
        dict(job_id="t2v-sneaker", prompt="A red sneaker turning slowly on a white table, soft studio light, quiet room tone",
             seconds=5.0, metadata=json.dumps({"sku": "SNK-001"})),
        dict(job_id="t2v-coffee-9x16", prompt="Steam rising from a cup of coffee on a wooden counter, morning light",
             width=512, height=768, num_frames=49, metadata=json.dumps({"sku": "CUP-7", "variant": "9:16"})),
        dict(job_id="t2v-silent", prompt="A watch face catching the light, macro shot", width=512, height=512,
             num_frames=25, audio=False),
        dict(job_id="i2v-sneaker", prompt="The sneaker rotates a quarter turn, camera still",
             image_uri="demo_images/sneaker_side.png", num_frames=49, metadata=json.dumps({"sku": "SNK-001"})),
        dict(job_id="i2v-bottle", prompt="Condensation runs down a green bottle, slow push-in",
             image_uri="demo_images/bottle.png", width=512, height=768, num_frames=49),
        dict(job_id="keyframes-sneaker-turn", prompt="A red sneaker making a half turn on a white table, orbiting camera",
             keyframes=[dict(uri="demo_images/sneaker_front.png", frame=0, strength=1.0),
                        dict(uri="demo_images/sneaker_side.png", frame=32, strength=1.0),
                        dict(uri="demo_images/sneaker_back.png", frame=64, strength=1.0)],
             num_frames=65, metadata=json.dumps({"sku": "SNK-001", "layout": "turn-3"})),
    ]
    write_manifest(rows, str(HERE / "demo.parquet"))
    print(f"wrote {HERE / 'demo.parquet'} ({len(rows)} rows) and {IMAGES}")


if __name__ == "__main__":
    main()
