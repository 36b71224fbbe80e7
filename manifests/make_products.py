"""Rebuild manifests/products.parquet, a small product table (SKU, title, photos), and its images.

    python manifests/make_products.py

A product table is what a shop has, not prompts: recipes in pipelines/ turn each row into
jobs. The photos are drawn here (front, side and back of each product), not copied.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from make_demo import draw_sneaker  # same folder: `python manifests/make_products.py` puts it on sys.path

from ltx_ray.manifest import write_manifest

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "product_images"
SIZE = (768, 512)
BACKDROP, TABLE = (235, 235, 230), (200, 195, 185)


def _stage(size: tuple[int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", size, BACKDROP)
    d = ImageDraw.Draw(img)
    d.rectangle([0, int(size[1] * 0.78), size[0], size[1]], fill=TABLE)
    return img, d


def draw_bottle(angle: str, size=SIZE) -> Image.Image:
    """A green glass bottle: label in front, narrower in profile, bare glass behind."""
    img, d = _stage(size)
    w, h = size
    half = 0.09 if angle == "side" else 0.12
    d.rectangle([w * (0.5 - half), h * 0.3, w * (0.5 + half), h * 0.8], fill=(40, 120, 60))
    d.rectangle([w * 0.47, h * 0.14, w * 0.53, h * 0.3], fill=(40, 120, 60))
    d.rectangle([w * 0.465, h * 0.1, w * 0.535, h * 0.14], fill=(180, 150, 60))
    if angle == "front":
        d.rectangle([w * 0.38, h * 0.45, w * 0.62, h * 0.62], fill=(250, 245, 220))
        d.text((w * 0.43, h * 0.51), "SPRING", fill=(40, 90, 50))
    elif angle == "side":
        d.rectangle([w * 0.41, h * 0.45, w * 0.45, h * 0.62], fill=(250, 245, 220))  # label edge
    return img


def draw_mug(angle: str, size=SIZE) -> Image.Image:
    """A blue mug: handle to the right (front), towards us (side), to the left (back)."""
    img, d = _stage(size)
    w, h = size
    d.rounded_rectangle([w * 0.38, h * 0.38, w * 0.62, h * 0.8], radius=18, fill=(40, 70, 180))
    d.ellipse([w * 0.38, h * 0.34, w * 0.62, h * 0.42], fill=(30, 50, 130))
    if angle == "front":
        d.arc([w * 0.56, h * 0.46, w * 0.72, h * 0.7], start=-90, end=90, fill=(40, 70, 180), width=14)
        d.ellipse([w * 0.46, h * 0.52, w * 0.54, h * 0.64], fill=(250, 250, 250))  # logo
    elif angle == "back":
        d.arc([w * 0.28, h * 0.46, w * 0.44, h * 0.7], start=90, end=270, fill=(40, 70, 180), width=14)
    else:
        d.rectangle([w * 0.48, h * 0.48, w * 0.52, h * 0.7], fill=(25, 45, 120))  # handle seen end-on
    return img


PRODUCTS = [
    dict(sku="SNK-001", title="trail running sneaker", color="red", category="footwear", draw=draw_sneaker),
    dict(sku="BTL-002", title="glass water bottle", color="green", category="kitchen", draw=draw_bottle),
    dict(sku="MUG-003", title="ceramic coffee mug", color="blue", category="kitchen", draw=draw_mug),
]


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    rows = []
    for product in PRODUCTS:
        row = {k: v for k, v in product.items() if k != "draw"}
        for angle in ("front", "side", "back"):
            product["draw"](angle, size=SIZE).save(IMAGES / f"{product['sku']}-{angle}.png")
            row[f"image_{angle}"] = f"product_images/{product['sku']}-{angle}.png"
        rows.append(row)
    write_manifest(rows, str(HERE / "products.parquet"))
    print(f"wrote {HERE / 'products.parquet'} ({len(rows)} products) and {IMAGES}")


if __name__ == "__main__":
    main()
