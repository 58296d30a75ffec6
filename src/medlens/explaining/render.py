"""The explanation pictures: panels side by side with a few lines of facts underneath, drawn with Pillow.

Pillow, not matplotlib: a triage run draws one picture per study, and a matplotlib figure costs ~100 ms where
this costs a few. Text uses Pillow's bundled font, so nothing is looked up on the system or the network.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from medlens.data.cache import to_uint8
from medlens.utils.files import atomic_write_bytes

PANEL = 256
FONT_SIZE = 14
LINE = 18


def heat_rgb(heat: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A map in [0, 1] as an RGB uint8 picture (colormap lookup only)."""
    lut = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return lut[np.clip(np.asarray(heat) * 255, 0, 255).astype(np.uint8)]


def blend(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """``image`` (H, W[, C], any dtype) with ``heat`` (in [0, 1], resized to fit) laid over it."""
    rgb = to_uint8(np.asarray(image), 3).astype(np.float32)
    h, w = rgb.shape[:2]
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != (h, w):
        heat = np.asarray(Image.fromarray(heat).resize((w, h), Image.BILINEAR))
    return (rgb * (1 - alpha) + heat_rgb(heat, cmap).astype(np.float32) * alpha).clip(0, 255).astype(np.uint8)


def compose(panels: list[tuple[str, np.ndarray]], lines: list[str], path: str | Path) -> Path:
    """Write a PNG: the titled panels in a row (each scaled to 256 px high) and the text lines below."""
    font = ImageFont.load_default(size=FONT_SIZE)
    tiles = []
    for title, arr in panels:
        im = Image.fromarray(to_uint8(np.asarray(arr), 3))
        scale = PANEL / max(im.size[1], 1)
        tiles.append((title, im.resize((max(1, round(im.size[0] * scale)), PANEL), Image.BILINEAR)))
    width = max(sum(t.size[0] for _, t in tiles) + 8 * (len(tiles) + 1), 520)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = [part for line in lines for part in _wrap(line, measure, font, width - 16)]
    height = LINE + 6 + PANEL + 10 + LINE * len(lines) + 8
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = 8
    for title, tile in tiles:
        draw.text((x, 4), title, fill=(40, 40, 40), font=font)
        canvas.paste(tile, (x, LINE + 6))
        x += tile.size[0] + 8
    y = LINE + 6 + PANEL + 8
    for line in lines:
        draw.text((8, y), _fit(line, draw, font, width - 16), fill=(20, 20, 20), font=font)
        y += LINE
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=False)
    return atomic_write_bytes(path, buf.getvalue())


def _wrap(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> list[str]:
    """``text`` broken at spaces into lines that fit ``width`` pixels (at most three, the last cut)."""
    out, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}" if line else word
        if line and draw.textlength(trial, font=font) > width:
            out.append(line)
            line = word
        else:
            line = trial
    out.append(line)
    return [*out[:2], " ".join(out[2:])] if len(out) > 3 else out


def _fit(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
