"""Poster frames of stored videos: one still per video, made with ffmpeg the first time
it is asked for and kept in storage next to the video, so galleries and players show a
picture before anything plays without downloading the video for it.

The poster is stored under a name derived from the video's (never recorded as a file of
its own), so it is only reachable through the routes that serve it, and those check
exactly what the video's own route checks.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile

import imageio_ffmpeg

from .storage import LocalStorage, Storage

#: A stuck ffmpeg must not hold a web worker for long; a still of a short clip takes
#: well under a second.
FFMPEG_SECONDS = 20
#: ffmpeg's `thumbnail` filter picks the most representative frame of this many, so a
#: video that fades in from black gets a picture, not a black square.
CANDIDATE_FRAMES = 48
#: Posters are shown at card width; wider ones only cost bytes.
MAX_WIDTH = 1280


class PosterError(Exception):
    """ffmpeg could not make a still of the file (not a video it can read)."""


def poster_name(video_name: str) -> str:
    """The storage name of a video's poster. A hash of the video's name, so it fits the
    storage's safe names and can never be the name of a generated output (those are
    32 characters before the dot)."""
    digest = hashlib.sha256(video_name.encode()).hexdigest()[:40]
    return f"poster-{digest}.jpg"


def poster_jpeg(storage: Storage, video_name: str) -> bytes | None:
    """The JPEG poster of the stored video `video_name`, made and kept on first use;
    None when the video is not in storage. Raises PosterError if ffmpeg fails."""
    name = poster_name(video_name)
    cached = storage.read(name)
    if cached:
        return cached
    path = storage.path(video_name) if isinstance(storage, LocalStorage) else None
    if path is not None:
        still = extract_still(str(path))
    else:
        # Not a file on this disk (an object store, or missing): ffmpeg needs a seekable
        # file, since an MP4's index may sit at its end.
        data = storage.read(video_name)
        if data is None:
            return None
        with tempfile.TemporaryDirectory(prefix="runbase-poster-") as tmp:
            local = os.path.join(tmp, "video")
            with open(local, "wb") as handle:
                handle.write(data)
            still = extract_still(local)
    # Two first requests at once both make it; saves are atomic, so either copy wins.
    storage.save(name, still)
    return still


def extract_still(path: str) -> bytes:
    """A JPEG of one representative early frame of the video file at `path`."""
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", path,
        "-vf", f"thumbnail={CANDIDATE_FRAMES},scale='min({MAX_WIDTH},iw)':-2",
        "-frames:v", "1", "-an",
        # bitexact: no encoder name or version in the file, which carries no metadata
        # at all (shared pages promise that of every file they serve).
        "-fflags", "+bitexact", "-flags:v", "+bitexact",
        "-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "3", "pipe:1",
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=FFMPEG_SECONDS, check=False)
    except subprocess.TimeoutExpired as error:
        raise PosterError("ffmpeg took too long") from error
    if done.returncode != 0 or not done.stdout.startswith(b"\xff\xd8"):
        raise PosterError(done.stderr.decode("utf-8", "replace").strip()[:300] or "no frame")
    return done.stdout
