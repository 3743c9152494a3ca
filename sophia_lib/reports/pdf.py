"""HTML → PDF with Chromium's own print (Playwright), after the page's plotly charts have drawn.

kaleido (plotly's static image export) is not installed, so charts are not turned into images: the
page carries plotly.js inline, Chromium runs it, and prints what it drew (vector SVG in the PDF).
The page is laid out at the printable width of A4, so the responsive charts fit the paper.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sophia_lib.errors import SophiaError

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PRINT_WIDTH_PX = 720  # A4 (794 px at 96 dpi) less 1 cm margins each side
CHARTS_DRAWN = """() => {
  const want = document.querySelectorAll('.plotly-graph-div').length;
  const drawn = document.querySelectorAll('.plotly-graph-div .main-svg').length;
  return want === 0 || drawn >= want;
}"""


class PdfError(SophiaError):
    reason = "pdf_failed"


def find_chromium(configured: Path | None = None) -> str | None:
    """The Chromium to use: the configured one, else /usr/bin/chromium (or chromium on PATH), else None
    (Playwright's own downloaded browser)."""
    if configured is not None:
        if not Path(configured).is_file():
            raise PdfError(f"reports.chromium {configured} does not exist.",
                           fix="point reports.chromium at a Chromium executable, or unset it")
        return str(configured)
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def html_to_pdf(html: Path, pdf: Path, *, chromium: Path | None = None, timeout_s: float = 60) -> Path:
    """Print ``html`` to ``pdf`` (A4, backgrounds on) once every plotly chart has drawn."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    executable = find_chromium(chromium)
    tmp = pdf.with_name(f".{pdf.name}.tmp")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": PRINT_WIDTH_PX, "height": 1000})
                page.goto(html.resolve().as_uri(), wait_until="load", timeout=timeout_s * 1000)
                page.wait_for_function(CHARTS_DRAWN, timeout=timeout_s * 1000)
                page.pdf(path=str(tmp), format="A4", print_background=True,
                         margin={"top": "1cm", "bottom": "1cm", "left": "1cm", "right": "1cm"})
            finally:
                browser.close()
    except PlaywrightError as exc:
        tmp.unlink(missing_ok=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PdfError(f"Chromium could not print {html.name} to PDF: {first}",
                       fix="check that Chromium runs here (reports.chromium, or `playwright install chromium`)"
                       ) from None
    tmp.replace(pdf)
    return pdf
