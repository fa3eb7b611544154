"""Make the README's screenshot of the page: app.py scoring one of its own examples, in headless chromium.

    python -m tools.screenshot                        # app.py --demo (trains demo_output/ first if needed)
    python -m tools.screenshot --model_path outputs/roberta-base --example "Long machine-written text"

Needs Debian's chromium (apt-get install chromium) and playwright (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from m4_training import serving
from tools.browser import chromium_page, missing_browser, running_app

ROOT = Path(__file__).resolve().parents[1]
MARGIN_PX = 16


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", help="a train.py output directory (default: the demo model)")
    parser.add_argument(
        "--example", default="Human text with a machine-written middle", choices=serving.example_texts()
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "app.png"))
    args = parser.parse_args()
    if reason := missing_browser():
        print(f"error: {reason}", file=sys.stderr)
        return 2
    from playwright.sync_api import expect

    app_args = ["--model_path", args.model_path] if args.model_path else ["--demo"]
    with (
        running_app(*app_args, log=Path(tempfile.gettempdir()) / "m4-app-screenshot.log") as url,
        chromium_page() as (page, outside),
    ):
        page.goto(url)
        page.get_by_text(args.example, exact=True).click()
        expect(page.locator("#m4-text textarea")).to_have_value(serving.example_texts()[args.example])
        page.locator("#m4-score").click()
        page.locator("#m4-result[data-prob]").wait_for(timeout=120_000)
        box = page.locator("#m4-shaded-box").bounding_box()
        page.screenshot(
            path=args.output,
            full_page=True,
            clip={"x": 0, "y": 0, "width": 1280, "height": box["y"] + box["height"] + MARGIN_PX},
        )
    if outside:
        print(f"error: the page tried to reach {outside}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
