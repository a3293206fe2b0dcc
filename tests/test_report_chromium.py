"""The HTML report in a real browser: headless Chromium loads it, takes a screenshot, and no
injected markup or script from model text takes effect."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import llmweb_plugin as lw
from llmweb_plugin.report import DiversityReport

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="needs Debian's chromium at /usr/bin/chromium "
                              "(apt-get install -y chromium)"),
]

EVIL = [
    "<script>document.title='pwned';document.body.setAttribute('data-pwned','1')</script>",
    "<img src=x onerror=\"document.title='pwned';document.body.setAttribute('data-pwned','2')\">",
    "<svg onload=\"document.title='pwned'\"><a href=\"http://example.invalid/\">click</a></svg>",
]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=180, check=False,
    )


def test_html_report_renders_in_chromium_and_nothing_executes(store, tmp_path: Path) -> None:
    recs = []
    for t in (1, 2, 3):
        for a in ("alice", "bob", "<b>mallory</b>"):
            for i in range(3):
                text = (f"{a} thinks bitcoin {['rises', 'falls', 'stalls'][(i + t) % 3]}"
                        if t < 3 else f"bitcoin is uncertain {i}")
                if a == "<b>mallory</b>":
                    text = EVIL[i] + " " + text
                recs.append(lw.Record(text=text, run_id="xss", agent=a, step=t, index=i))
            recs.append(lw.Record(text=recs[-3].text, run_id="xss", agent=a, step=t, kind="post"))
    store.upsert(recs, vectors=store.embedder.embed([r.text for r in recs]))
    rep = DiversityReport.from_store(store, run_id="xss", n_examples=3, title="XSS check")
    page = tmp_path / "report.html"
    rep.to_html(page)
    url = page.resolve().as_uri()

    dom = chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "<title>XSS check</title>" in html  # document.title was never changed
    assert "data-pwned" not in html.split("<body", 1)[1].split(">", 1)[0]
    assert not re.search(r"<img[^>]*src=\"x\"", html)
    assert "<svg" not in html and "<script" not in html and "<b>mallory" not in html
    # the texts are there, as text
    assert "&lt;script&gt;document.title='pwned'" in html
    assert "&lt;img src=x onerror=\"document.title='pwned'" in html
    assert "&lt;b&gt;mallory&lt;/b&gt;" in html
    n_figs = len(rep.figures())
    assert len(re.findall(r"<img alt=\"[\w-]+\" src=\"data:image/png;base64,", html)) == n_figs

    shot = tmp_path / "report.png"
    res = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert res.returncode == 0, res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2000)
    # the page is not blank: the screenshot has many distinct colours (plots)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50
