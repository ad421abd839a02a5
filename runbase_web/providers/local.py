"""The built-in offline models: real files from prompt and seed, no network, no keys.

`local/sketch` takes optional reference images (`image_urls`): the first one's colours and
rough layout become the picture's background. This server's own files are read from
storage; other URLs are downloaded through the guarded fetcher, as for any provider.

`local/test` drives every branch of the lifecycle on demand: it behaves like an
async provider (submit, then poll) so a slow test run holds no worker thread.
"""
from __future__ import annotations

import time

from PIL import Image

from . import local_media
from .base import Done, Job, Output, Pending, ProviderError
from .common import ProviderAdapter
from .media import decode_still

#: Long edge in pixels of each `resolution` choice of local/sketch.
SKETCH_LONG_EDGE = {"512": 512, "1K": 1024}
#: Long edge of local/sketch-video frames; small so a video renders in about a second.
VIDEO_LONG_EDGE = 640
#: How often a `local/test` run set to time out is looked at again.
TIMEOUT_POLL_SECONDS = 1.0


class LocalAdapter(ProviderAdapter):
    """Renders local/sketch, local/sketch-video and local/test. Local models need no
    credentials or network (no client), and nothing runs elsewhere, so there is nothing to
    cancel."""

    POLL_SCHEDULE = (TIMEOUT_POLL_SECONDS,)
    #: Uploads may be up to 20 MB, and grow a little when converted to PNG.
    REFERENCE_MAX_BYTES = 32 * 1024 * 1024

    def start(self, job: Job) -> Done | Pending:
        """Render now (sketch models) or submit a fake job (local/test)."""
        name = job.spec.upstream
        if name == "sketch":
            return self._sketch(job)
        if name == "sketch-video":
            return self._video(job)
        if name == "test":
            return self._submit_test(job)
        raise ProviderError(f"unknown local model {name!r}", code="model_unavailable")

    def poll(self, job: Job) -> Done | Pending:
        """Finish a local/test job once its delay is over (never, for outcome=timeout)."""
        if job.input.get("outcome") == "timeout":
            return self.pending(job, job.upstream_id)
        ready_at = (job.upstream_state or {}).get("ready_at", 0)
        if time.time() < ready_at:
            # The fake job's own finish time, not a poll schedule: wake up right then.
            return Pending(job.upstream_id, ready_at - time.time(), dict(job.upstream_state))
        return self._finish_test(job)

    def _sketch(self, job: Job) -> Done:
        width, height = local_media.frame_size(
            job.input["aspect_ratio"], SKETCH_LONG_EDGE[job.input["resolution"]])
        reference = self._first_reference(job)
        images = [local_media.sketch_png(job.input["prompt"], job.input["seed"], width, height,
                                         index, reference=reference)
                  for index in range(job.input["num_images"])]
        return Done([Output("image/png", data) for data in images])

    def _first_reference(self, job: Job) -> Image.Image | None:
        """The first of the run's `image_urls`, decoded (the others are checked too, as a
        provider would, but not used); None without references."""
        images = self.reference_images(job)
        if not images:
            return None
        data, _media_type = images[0]
        return decode_still(data, 1)

    def _video(self, job: Job) -> Done:
        width, height = local_media.frame_size(job.input["aspect_ratio"], VIDEO_LONG_EDGE)
        data = local_media.sketch_mp4(job.input["prompt"], job.input["seed"], width, height,
                                      job.input["duration"])
        return Done([Output("video/mp4", data)])

    def _submit_test(self, job: Job) -> Done | Pending:
        delay = job.input["delay_ms"] / 1000
        if delay <= 0 and job.input["outcome"] != "timeout":
            return self._finish_test(job)
        upstream_id = f"local-test-{job.run_id}"
        return Pending(upstream_id, delay, {"ready_at": time.time() + delay})

    def _finish_test(self, job: Job) -> Done:
        if job.input["outcome"] == "fail":
            raise ProviderError("local/test failed on purpose (outcome=fail).",
                                code="provider_error")
        return Done([Output("image/png", local_media.test_png(job.input["prompt"], job.input["seed"]))])
