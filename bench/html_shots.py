"""Screenshots of the HTML viewer: head, model and matrix views at 1400×900 and 800×600.

Cases: the classic example, a sentence pair, an encoder–decoder (a tiny BART built from a
config, as the tests do) and a ~500-token input. Opens each page in Debian's chromium via
Playwright (executable_path) and prints how long each took to be ready.

    .venv/bin/python bench/html_shots.py OUT_DIR
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CHROMIUM = "/usr/bin/chromium"


def page(folder: Path, name: str, *args: str) -> Path:
    path = folder / f"{name}.html"
    with open(path, "wb") as f:
        subprocess.run([sys.executable, "-m", "attnviz", "show", *args, "--format", "html"], stdout=f, check=True)
    return path


def main() -> None:
    from playwright.sync_api import sync_playwright
    from tiny_models import save_tiny

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "html-shots")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bart = save_tiny("bart", folder / "bart")
        words = (Path(__file__).resolve().parent.parent / "sample_inputs" / "long.txt").read_text().split()
        long_text = " ".join((words * 4)[:390])  # about 500 tokens
        pages = {
            "classic": page(folder, "classic", "I have a dream"),
            "pair": page(folder, "pair", "I have a dream", "--pair", "so do I, said the cat"),
            "bart": page(folder, "bart", "I have a dream", "--model", str(bart)),
            "long": page(folder, "long", long_text, "--truncate"),
        }
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for name, path in pages.items():
                for w, h in ((1400, 900), (800, 600)):
                    tab = browser.new_page(viewport={"width": w, "height": h})
                    started = time.perf_counter()
                    tab.goto(path.as_uri())
                    tab.wait_for_selector(".attnviz[data-ready='1']", timeout=60_000)
                    ready = time.perf_counter() - started
                    tab.hover(".av-col.left .av-tok >> nth=2")
                    tab.screenshot(path=str(out / f"{name}-{w}-head.png"))
                    tab.click("button[data-value=model]")
                    tab.screenshot(path=str(out / f"{name}-{w}-model.png"))
                    tab.click("button[data-value=matrix]")
                    tab.screenshot(path=str(out / f"{name}-{w}-matrix.png"))
                    size = path.stat().st_size / 1e6
                    print(f"{name:8} {w}x{h}  {size:6.2f} MB  ready in {ready:.2f} s")
                    tab.close()
            browser.close()


if __name__ == "__main__":
    main()
