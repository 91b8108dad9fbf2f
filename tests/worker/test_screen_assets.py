"""The live screen's files ship in the package and name nothing outside it (no CDN)."""

from __future__ import annotations

import re

from streams.worker.screen import _static


def test_pages_load_only_shipped_files() -> None:
    files = _static()
    assert {"rooms.html", "room.html", "common.js", "rooms.js", "room.js", "screen.css"} <= set(
        files
    )
    for page in ("rooms.html", "room.html"):
        html = files[page][0].decode()
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        assets = [r for r in refs if r.endswith((".js", ".css"))]
        assert len(assets) == 3, (page, refs)
        for ref in assets:
            assert "//" not in ref and ref.rsplit("/", 1)[-1] in files, (page, ref)
    for name, (body, _) in files.items():
        urls = set(re.findall(rb"https?://[^\s\"'`]+", body)) - {b"http://www.w3.org/2000/svg"}
        assert not urls, (name, urls)
