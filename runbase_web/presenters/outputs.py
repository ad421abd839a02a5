"""A run's outputs as pages show them, one shape for every page (the Playground's cards,
the run page, compare, the public share page; templates/macros/outputs.html draws them):
where to show each file from, the absolute URL to copy, a download link with a readable
file name, a poster still for videos, and alt text."""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from flask import url_for

from ..models import Run
from ..services.files import URL_PREFIX, is_video
from ..urls import absolute_url

#: File names carry the prompt's first words, never a whole paragraph.
SLUG_CHARS = 48


def slug(text: str) -> str:
    """`text` as a lower-case file-name fragment: letters and digits joined by dashes."""
    # Accents dropped (é → e) rather than splitting words; other scripts drop out.
    plain = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", plain.lower())
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > SLUG_CHARS:
            break
        out = candidate
    return out or (words[0][:SLUG_CHARS] if words else "")


def download_name(*, prompt: str, model: str, number: int, path: str,
                  run_id: str | None = None) -> str:
    """A file name to save output `number` (1-based) under: the prompt's first words
    (else the model's name), the run id when the viewer may see it, the number."""
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else "bin"
    parts = [slug(prompt) or slug(model.split("/")[-1]) or "output"]
    if run_id:
        parts.append(run_id)
    parts.append(str(number))
    return "-".join(parts) + "." + extension


def _prompt(run: Run) -> str:
    prompt = (run.input or {}).get("prompt", "")
    return prompt if isinstance(prompt, str) else ""


def _alt(model: str, number: int, count: int, prompt: str, video: bool) -> str:
    what = "Video" if video else "Image"
    position = f" {number} of {count}" if count > 1 else ""
    about = f": {prompt[:120]}{'…' if len(prompt) > 120 else ''}" if prompt else ""
    return f"{what}{position} made with {model}{about}"


def stored_name(path: str) -> str | None:
    """The storage name of an output served from our files route, else None."""
    return path.removeprefix(URL_PREFIX) if path.startswith(URL_PREFIX) else None


def poster_src(path: str) -> str | None:
    """Where the poster still of a video output is served (same capability as the
    video's own URL), or None for images and for files that are not ours."""
    name = stored_name(path)
    if name is None or not is_video(path):
        return None
    return url_for("web.output_poster", name=name)


def output_items(run: Run, base_url: str) -> list[dict[str, Any]]:
    """A signed-in owner's view of a run's outputs (file URLs, run id in file names)."""
    paths = run.output_urls or []
    prompt = _prompt(run)
    items = []
    for index, path in enumerate(paths):
        video = is_video(path)
        items.append({
            "number": index + 1, "count": len(paths), "src": path,
            "url": absolute_url(base_url, path), "is_video": video,
            "poster": poster_src(path),
            "download": url_for("web.download_output", run_id=run.id, index=index),
            "filename": download_name(prompt=prompt, model=run.model, number=index + 1,
                                      path=path, run_id=run.id),
            "alt": _alt(run.model, index + 1, len(paths), prompt, video),
        })
    return items


def shared_output_items(run: Run, base_url: str, prompt: str | None) -> list[dict[str, Any]]:
    """A shared run's outputs as a stranger sees them: addressed through the share token
    (never the owner's file URLs), no run id, the prompt only if it is shown."""
    paths = run.output_urls or []
    prompt = prompt or ""
    items = []
    for index, path in enumerate(paths):
        video = is_video(path)
        src = url_for("web.shared_output", token=run.share_token, index=index)
        items.append({
            "number": index + 1, "count": len(paths), "src": src,
            "url": absolute_url(base_url, src), "is_video": video,
            "poster": (url_for("web.shared_poster", token=run.share_token, index=index)
                       if video else None),
            "download": url_for("web.shared_output", token=run.share_token, index=index,
                                download=1),
            "filename": download_name(prompt=prompt, model=run.model, number=index + 1,
                                      path=path),
            "alt": _alt(run.model, index + 1, len(paths), prompt, video),
        })
    return items
