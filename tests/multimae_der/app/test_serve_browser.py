"""The web app in a real (headless, system) Chromium driven by playwright: upload a SynthAV clip, read the
prediction, scrub the overlay, switch explainer, pick an example, refuse a bad upload; nothing fetched from
the internet by the page or the server. Skips only when chromium/playwright are missing outside CI."""

import os
import re
import shutil

import pytest
from _mm_serve_helpers import NetworkGuard, browser_available, free_port, make_run_and_clips, require_gradio

from multimae_der.model.predict import predict_file
from multimae_der.model.run import load_run

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
EMOTION = re.compile(r"Predicted emotion: (\S+) \((\d+)%\)")


def _need_browser() -> None:
    missing = browser_available()
    if missing is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the browser test must run in CI: {missing}")
    pytest.skip(missing)


def _wait_done(page, text: str) -> str:
    """Waits until the status line says ``text`` and the page's progress indicators are gone."""
    page.wait_for_function(
        "t => { const s = document.querySelector('#status'); return s && s.innerText.includes(t) && "
        "!document.body.innerText.includes('processing |') && "
        "!document.querySelector('[data-testid=status-tracker]:not(.hide)'); }", arg=text, timeout=120_000)
    return page.inner_text("#status")


def _shown_emotion(page) -> tuple[str, int]:
    m = EMOTION.search(page.inner_text("#emotion"))
    assert m, page.inner_text("#emotion")
    return m.group(1), int(m.group(2))


def _pick(page, dropdown: str, option: str) -> None:
    page.click(f"{dropdown} input")
    page.get_by_role("option", name=option, exact=True).click()


@pytest.mark.slow
def test_upload_a_clip_in_the_browser(tmp_path, monkeypatch):
    _need_browser()
    require_gradio()
    from playwright.sync_api import sync_playwright

    from multimae_der.app.serve import serve

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # uploads land here, not in /tmp/gradio
    run_dir, clips = make_run_and_clips(tmp_path)
    run = load_run(run_dir)
    expected = [predict_file(run, c) for c in clips]
    guard = NetworkGuard(monkeypatch)
    demo, url = serve(run_dir, port=free_port(), examples=clips[0].parent.parent, block=False, quiet=True)
    remote: list[str] = []
    shot = tmp_path / "serve.png"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1500})

            def only_local(route):
                if route.request.url.startswith(url) or route.request.url.startswith(("data:", "blob:")):
                    route.continue_()
                else:
                    remote.append(route.request.url)
                    route.abort()

            page.route("**/*", only_local)
            page.goto(url)
            faith = page.inner_text("#faithfulness")
            assert "No F-Fidelity results were computed" in faith and "multimae-der faithfulness --run" in faith

            # upload: the shown emotion is the Python API's, the overlay appears, probabilities for every class
            page.set_input_files("#upload input[type=file]", str(clips[0]))
            assert f"Analysed {clips[0].name} with saliency" in _wait_done(page, "Analysed")
            emotion, percent = _shown_emotion(page)
            assert emotion == expected[0].emotion
            assert percent == round(100 * expected[0].probabilities[expected[0].emotion])
            probs = page.inner_text("#probs")
            assert all(name in probs for name in run.class_names)
            assert re.search(r"video \d+%", page.inner_text("#share"))
            page.wait_for_function("() => { const i = document.querySelector('#overlay img'); "
                                   "return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
            assert page.eval_on_selector("#overlay img", "i => i.naturalWidth") == 224 + 7 + 224
            assert page.inner_text("#caption").startswith("step 1/8: video frame")

            # scrub over time: step 3 shows another overlay
            first = page.eval_on_selector("#overlay img", "i => i.src")
            page.fill("#step input[type=number]", "3")
            page.press("#step input[type=number]", "Enter")
            page.wait_for_function("() => document.querySelector('#caption').innerText.startsWith('step 3/8')",
                                   timeout=30_000)
            page.wait_for_function("s => document.querySelector('#overlay img').src !== s", arg=first,
                                   timeout=30_000)

            # another explainer re-explains the same clip; the prediction does not change
            _pick(page, "#explainer", "vit_gradcam")
            _wait_done(page, "with vit_gradcam")
            assert _shown_emotion(page)[0] == expected[0].emotion
            page.screenshot(path=str(shot), full_page=True)

            # an example clip
            _pick(page, "#example", clips[1].name)
            _wait_done(page, f"Analysed {clips[1].name}")
            assert _shown_emotion(page)[0] == expected[1].emotion

            # a bad upload: a message in the page, no stack trace
            bad = tmp_path / "notes.mp4"
            bad.write_text("not a video\n" * 50)
            page.goto(url)
            page.set_input_files("#upload input[type=file]", str(bad))
            status = _wait_done(page, "Cannot analyse")
            assert "notes.mp4 is not a video file" in status
            body = page.inner_text("body")
            assert "Traceback" not in body and "Error" not in body.replace("error", "")
            browser.close()
    finally:
        demo.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert remote == []  # no font, CDN or analytics request left the machine
    assert guard.attempts == []
