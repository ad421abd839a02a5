"""Share links over the test client: share, hide the prompt, revoke, the public page and
its files, its preview tags and headers, and who may do what."""
from __future__ import annotations

import html
import json
import re

import pytest

from runbase_web.extensions import db
from runbase_web.models import Run
from tests.support.png_recipe import read_png_recipe
from tests.web import HTMX, playground_run, sign_in

PROMPT = "a <b>secret</b> garden at night"


@pytest.fixture
def app_config():
    return {"PUBLIC_URL": "https://runbase.example"}


@pytest.fixture
def run_id(app, signed_in, worker):
    """A succeeded local/test run of alice's, with one PNG output."""
    return playground_run(app, signed_in, {"model": "local/test", "prompt": PROMPT, "seed": "3"})


def share(client, run_id, **form):
    return client.post(f"/runs/{run_id}/share", data=form, headers=HTMX)


def token_of(app, run_id) -> str | None:
    with app.app_context():
        return db.session.get(Run, run_id).share_token


def meta(page: str, key: str) -> str | None:
    match = re.search(rf'<meta (?:property|name)="{re.escape(key)}" content="([^"]*)">', page)
    return html.unescape(match.group(1)) if match else None


def test_share_makes_a_public_page_with_outputs_prompt_and_preview_tags(app, signed_in, run_id, user):
    response = share(signed_in, run_id)
    assert response.status_code == 200 and "<html" not in response.text
    token = token_of(app, run_id)
    assert token and len(token) >= 32
    link = f"https://runbase.example/s/{token}"
    assert f'value="{link}"' in response.text and f'data-copy="{link}"' in response.text
    assert "Revoke link" in response.text and 'id="share-panel"' in response.text
    with app.app_context():
        assert db.session.get(Run, run_id).shared_at is not None

    visitor = app.test_client()
    page = visitor.get(f"/s/{token}")
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "noindex" in page.headers["X-Robots-Tag"]
    text = page.text
    assert "a &lt;b&gt;secret&lt;/b&gt; garden at night" in text and "<b>secret</b>" not in text
    assert re.search(r'<p class="run-prompt shared-prompt" hx-disable', text)
    image_src = re.search(r'<img src="(/s/[\w-]+/outputs/0)"', text).group(1)
    assert meta(text, "og:image") == "https://runbase.example" + image_src
    assert meta(text, "twitter:image") == meta(text, "og:image")
    assert meta(text, "og:url") == link
    assert meta(text, "og:title") == "Made with Test (offline)"
    assert meta(text, "og:description") == PROMPT
    assert meta(text, "twitter:card") == "summary_large_image"
    assert f'href="/playground?share={token}"' in text
    # Nothing of the account: not the owner, not the run id, not the owner's file URLs.
    assert user.email not in text and run_id not in text and "/files/generated/" not in text
    assert "/runs/" not in text

    image = visitor.get(image_src)
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert image.headers["Referrer-Policy"] == "no-referrer"
    shared_recipe = read_png_recipe(image.data)
    assert shared_recipe == {"model": "local/test", "input": json.loads(json.dumps(
        stored_input(app, run_id))), "run": link}
    assert run_id.encode() not in image.data


def stored_input(app, run_id) -> dict:
    with app.app_context():
        return db.session.get(Run, run_id).input


def test_hide_prompt_keeps_it_off_the_page_the_file_and_the_playground(app, signed_in, run_id):
    share(signed_in, run_id, hide_prompt="1")
    token = token_of(app, run_id)
    visitor = app.test_client()
    text = visitor.get(f"/s/{token}").text
    assert "secret" not in text and "data-shared-prompt" not in text
    assert meta(text, "og:description") == "Made with Test (offline) on Runbase."
    image = visitor.get(re.search(r'<img src="([^"]+)"', text).group(1))
    assert b"secret" not in image.data and "prompt" not in read_png_recipe(image.data)["input"]
    playground = visitor.get(f"/playground?share={token}").text
    assert '<input type="hidden" name="model" value="local/test">' in playground
    assert re.search(r'<textarea id="f-prompt"[^>]*></textarea>', playground)
    assert re.search(r'<input id="f-seed"[^>]*value="3"', playground, re.S)
    assert 'name="parent_id"' not in playground

    # Showing the prompt again keeps the same link.
    panel = share(signed_in, run_id).text
    assert token_of(app, run_id) == token and "and the prompt" in panel
    assert "secret" in visitor.get(f"/s/{token}").text
    playground = visitor.get(f"/playground?share={token}").text
    assert re.search(r'<textarea id="f-prompt"[^>]*>a &lt;b&gt;secret&lt;/b&gt; garden at night</textarea>',
                     playground)


def test_the_panel_says_when_the_model_writes_the_prompt_into_the_image(app, signed_in, run_id):
    # local/sketch captions its images with the prompt: hiding it can't take that out.
    sketch = playground_run(app, signed_in, {"model": "local/sketch", "prompt": PROMPT, "seed": "1",
                                       "aspect_ratio": "1:1", "resolution": "512"})
    note = "This model writes the prompt into the image itself"
    assert note in signed_in.get(f"/runs/{sketch}").text  # before sharing, by the box
    assert note not in signed_in.get(f"/runs/{run_id}").text
    hidden = share(signed_in, sketch, hide_prompt="1").text
    assert "data-share-prompt-in-image" in hidden and note in hidden and "not out of the picture" in hidden
    assert "data-share-prompt-in-image" not in share(signed_in, sketch).text
    assert "data-share-prompt-in-image" not in share(signed_in, run_id, hide_prompt="1").text


def test_revoke_makes_the_link_404_and_sharing_again_makes_a_new_link(app, signed_in, run_id):
    share(signed_in, run_id)
    old = token_of(app, run_id)
    visitor = app.test_client()
    assert visitor.get(f"/s/{old}").status_code == 200
    panel = signed_in.post(f"/runs/{run_id}/share/revoke", headers=HTMX)
    assert panel.status_code == 200 and "Create share link" in panel.text
    assert token_of(app, run_id) is None
    for url in (f"/s/{old}", f"/s/{old}/outputs/0"):
        response = visitor.get(url)
        assert response.status_code == 404 and response.headers["X-Robots-Tag"].startswith("noindex")
    assert "not valid any more" in visitor.get(f"/playground?share={old}").text
    share(signed_in, run_id)
    new = token_of(app, run_id)
    assert new and new != old
    assert visitor.get(f"/s/{old}").status_code == 404 and visitor.get(f"/s/{new}").status_code == 200


def test_another_account_cannot_share_or_revoke(app, signed_in, run_id, make_user):
    mallory = app.test_client()
    sign_in(mallory, make_user("mallory@example.com").email)
    assert share(mallory, run_id).status_code == 404
    assert token_of(app, run_id) is None
    share(signed_in, run_id)
    token = token_of(app, run_id)
    assert mallory.post(f"/runs/{run_id}/share/revoke", headers=HTMX).status_code == 404
    assert token_of(app, run_id) == token


def test_anonymous_cannot_share(app, run_id):
    response = app.test_client().post(f"/runs/{run_id}/share")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    assert token_of(app, run_id) is None


def test_only_a_succeeded_run_can_be_shared(app, signed_in, worker):
    failed = playground_run(app, signed_in, {"model": "local/test", "prompt": "x", "outcome": "fail"})
    panel = share(signed_in, failed)
    assert panel.status_code == 200 and "Only a run that succeeded can be shared." in panel.text
    assert token_of(app, failed) is None


def test_plain_post_goes_back_to_the_run_page(app, signed_in, run_id):
    response = signed_in.post(f"/runs/{run_id}/share", data={"hide_prompt": "1"})
    assert response.status_code == 303 and response.headers["Location"] == f"/runs/{run_id}"
    with app.app_context():
        assert db.session.get(Run, run_id).share_hide_prompt is True


@pytest.mark.parametrize("token", ["nope", "x" * 32, "../../etc/passwd", "a" * 200])
def test_unknown_tokens_are_404(client, token):
    response = client.get(f"/s/{token}")
    assert response.status_code == 404


def test_a_shared_video_has_og_video(app, signed_in, worker):
    run_id = playground_run(app, signed_in, {"model": "local/sketch-video", "prompt": "waves", "duration": "1"})
    share(signed_in, run_id)
    token = token_of(app, run_id)
    text = app.test_client().get(f"/s/{token}").text
    assert meta(text, "og:video") == f"https://runbase.example/s/{token}/outputs/0"
    assert meta(text, "og:video:type") == "video/mp4"
    # The picture of a video link is its poster, through the token like the video.
    assert meta(text, "og:image") == f"https://runbase.example/s/{token}/outputs/0/poster"
    with app.test_client().get(f"/s/{token}/outputs/0", headers={"Range": "bytes=0-99"}) as video:
        assert video.status_code == 206 and video.data[4:8] == b"ftyp"
