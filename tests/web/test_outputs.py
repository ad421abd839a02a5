"""The output component's files over the test client: downloads under readable names
(the owner's, and a shared run's through its token), and video posters made once with
ffmpeg and served exactly to whom the video is."""
from __future__ import annotations



from runbase_web import posters, state
from runbase_web.extensions import db
from runbase_web.models import Run
from runbase_web.presenters.outputs import download_name, slug
from tests.web import HTMX, playground_run, sign_in


def make_run(app, client, data) -> str:
    """A Playground run that succeeded; its id."""
    run_id = playground_run(app, client, data)
    with app.app_context():
        assert db.session.get(Run, run_id).status == "succeeded"
    return run_id


def outputs_of(app, run_id: str) -> list[str]:
    with app.app_context():
        return list(db.session.get(Run, run_id).output_urls)


def test_file_names_take_the_prompts_first_words():
    assert slug("A cozy <b>bookshop</b>, watercolor style!") == "a-cozy-b-bookshop-b-watercolor-style"
    assert len(slug("word " * 40)) <= 48
    assert download_name(prompt="", model="local/sketch", number=2, path="/x/abc.mp4") == "sketch-2.mp4"
    assert download_name(prompt="Ünïcode only ☃", model="m/x", number=1, path="a.png",
                         run_id="run_1") == "unicode-only-run_1-1.png"


def test_owner_downloads_an_output_under_a_readable_name(app, signed_in, worker, make_user, client):
    run_id = make_run(app, signed_in, {"model": "local/sketch", "prompt": "Two foxes, ink",
                                       "num_images": "2"})
    card = signed_in.get(f"/playground/runs/{run_id}/card", headers=HTMX).text
    assert f'href="/runs/{run_id}/outputs/1/download" download="two-foxes-ink-{run_id}-2.png"' in card
    # (Files are streamed: `with` closes them, as a browser finishing the download does.)
    with signed_in.get(f"/runs/{run_id}/outputs/1/download") as response, \
            signed_in.get(outputs_of(app, run_id)[1]) as original:
        assert response.status_code == 200 and response.mimetype == "image/png"
        assert response.headers["Content-Disposition"] == f"attachment; filename=two-foxes-ink-{run_id}-2.png"
        assert response.data == original.data
        assert "private" in response.headers["Cache-Control"]
    assert signed_in.get(f"/runs/{run_id}/outputs/2/download").status_code == 404
    # Another account cannot, as for the run page itself.
    other = app.test_client()
    sign_in(other, make_user("bob@example.com").email)
    assert other.get(f"/runs/{run_id}/outputs/0/download").status_code == 404


def test_video_poster_is_made_once_and_served_like_the_video(app, signed_in, worker):
    run_id = make_run(app, signed_in, {"model": "local/sketch-video", "prompt": "Waves",
                                       "duration": "1"})
    video = outputs_of(app, run_id)[0]
    card = signed_in.get(f"/playground/runs/{run_id}/card", headers=HTMX).text
    assert f'poster="{video}/poster"' in card
    name = video.rsplit("/", 1)[-1]
    storage = state.storage(app)
    assert storage.read(posters.poster_name(name)) is None  # nothing until asked for

    anyone = app.test_client()  # the video's name is the capability: no sign-in
    response = anyone.get(f"{video}/poster")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.data.startswith(b"\xff\xd8")
    assert "immutable" in response.headers["Cache-Control"]
    cached = storage.read(posters.poster_name(name))
    assert cached == response.data
    # Later requests are answered from storage, not by ffmpeg again.
    storage.save(posters.poster_name(name), b"\xff\xd8cached")
    assert anyone.get(f"{video}/poster").data == b"\xff\xd8cached"


def test_posters_exist_only_for_stored_videos(app, signed_in, worker):
    run_id = make_run(app, signed_in, {"model": "local/sketch", "prompt": "still"})
    image = outputs_of(app, run_id)[0]
    assert signed_in.get(f"{image}/poster").status_code == 404
    assert signed_in.get("/files/generated/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.mp4/poster").status_code == 404
    assert signed_in.get("/files/generated/..%2f..%2fetc.mp4/poster").status_code == 404


def test_shared_video_has_a_poster_and_a_download_through_the_token(app, signed_in, worker):
    run_id = make_run(app, signed_in, {"model": "local/sketch-video", "prompt": "Tide pools",
                                       "duration": "1"})
    assert signed_in.post(f"/runs/{run_id}/share", data={}, headers=HTMX).status_code == 200
    with app.app_context():
        token = db.session.get(Run, run_id).share_token
    stranger = app.test_client()
    page = stranger.get(f"/s/{token}").text
    assert f'poster="/s/{token}/outputs/0/poster"' in page
    assert f'href="/s/{token}/outputs/0?download=1" download="tide-pools-1.mp4"' in page
    assert run_id not in page
    # Link previews get the poster as the video's picture.
    assert f'<meta property="og:image" content="http://localhost/s/{token}/outputs/0/poster">' in page
    poster = stranger.get(f"/s/{token}/outputs/0/poster")
    assert poster.status_code == 200 and poster.mimetype == "image/jpeg"
    assert poster.headers["Referrer-Policy"] == "no-referrer"
    with stranger.get(f"/s/{token}/outputs/0?download=1") as download:
        assert download.headers["Content-Disposition"] == "attachment; filename=tide-pools-1.mp4"
    assert stranger.get(f"/s/{token}/outputs/1/poster").status_code == 404
    signed_in.post(f"/runs/{run_id}/share/revoke", headers=HTMX)
    assert stranger.get(f"/s/{token}/outputs/0/poster").status_code == 404
