#!/usr/bin/env python3
"""Checks the links of the built book and of the repository's Markdown front pages.

Every relative link in docs/book/**/*.html must name a file that exists and, with a
#fragment, an element with that id; every relative link in README.md and ARCHITECTURE.md
must name a file of the repository. Links to other sites are not fetched. Prints each
broken link with the page it is on and exits 1 when there is any.
"""

import html.parser
import pathlib
import re
import sys
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
BOOK = ROOT / "docs" / "book"
FRONT_PAGES = ["README.md", "ARCHITECTURE.md"]


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name == "href" and value and tag == "a":
                self.links.append(value)


def is_external(link):
    return re.match(r"^[a-z][a-z0-9+.-]*:", link) is not None


def parse(path, cache={}):
    if path not in cache:
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        cache[path] = page
    return cache[path]


def check_book():
    broken = []
    pages = sorted(BOOK.rglob("*.html"))
    if not pages:
        return [f"{BOOK} has no pages: run `mdbook build docs` first"]
    for path in pages:
        for link in parse(path).links:
            if is_external(link):
                continue
            target, _, fragment = link.partition("#")
            target_path = (path.parent / urllib.parse.unquote(target)).resolve() if target else path
            if target_path.is_dir():
                target_path = target_path / "index.html"
            if not target_path.exists():
                broken.append(f"{path.relative_to(ROOT)}: {link} (no such file)")
            elif fragment and target_path.suffix == ".html" and fragment not in parse(target_path).ids:
                broken.append(f"{path.relative_to(ROOT)}: {link} (no element with id '{fragment}')")
    return broken


def check_front_pages():
    broken = []
    for name in FRONT_PAGES:
        text = (ROOT / name).read_text(encoding="utf-8")
        for link in re.findall(r"\]\(([^)\s]+)\)", text):
            if is_external(link) or link.startswith("#"):
                continue
            target = (ROOT / link.partition("#")[0]).resolve()
            if not target.exists():
                broken.append(f"{name}: {link} (no such file)")
    return broken


def main():
    broken = check_book() + check_front_pages()
    for line in broken:
        print(f"broken link: {line}")
    if broken:
        return 1
    print(f"links checked: {len(list(BOOK.rglob('*.html')))} book pages and {', '.join(FRONT_PAGES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
