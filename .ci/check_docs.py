"""Check the built docs site: every page parses, every link between pages resolves, every figure is a
decodable image (embedded data URI or file), and — when Debian's `chromium` is installed — every page
loads in headless Chromium with all its images rendered (naturalWidth > 0)."""
import base64, io, json, re, shutil, subprocess, sys, tempfile
from html.parser import HTMLParser
from pathlib import Path
from PIL import Image

class Page(HTMLParser):
    "Collects <img src> and <a href> of a page."
    def __init__(self):
        super().__init__(); self.imgs, self.links = [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'img': self.imgs.append(a.get('src', ''))
        if tag == 'a' and a.get('href', '').endswith('.html') and '://' not in a['href']: self.links.append(a['href'])

def image_ok(src:str, folder:Path) -> bool:
    "Whether `src` decodes to a non-empty image."
    try:
        data = base64.b64decode(src.split(',', 1)[1]) if src.startswith('data:image') else (folder / src).read_bytes()
        if src.startswith('data:image/svg'): return b'<svg' in data
        im = Image.open(io.BytesIO(data)); im.load(); return im.size[0] > 10 and im.size[1] > 10
    except Exception: return False

PROBE = """<script>window.addEventListener('load', () => { const im = [...document.images];
  document.body.setAttribute('data-imgcheck', im.length + ' ' + im.filter(i => !(i.complete && i.naturalWidth > 0)).length); });</script>"""

def browser_check(page:Path) -> tuple:
    "(images, images that failed to render) of `page` loaded in headless Chromium."
    with tempfile.NamedTemporaryFile('w', suffix='.html', dir=page.parent, delete=False) as f:
        f.write(page.read_text().replace('</body>', PROBE + '</body>')); probe = Path(f.name)
    try:
        r = subprocess.run(['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=20000', '--dump-dom',
                            probe.resolve().as_uri()], capture_output=True, text=True, timeout=300)
    finally: probe.unlink()
    m = re.search(r'data-imgcheck="(\d+) (\d+)"', r.stdout)
    if not m: raise RuntimeError(f"{page.name} did not load in Chromium: {r.stderr[-500:]}")
    return int(m.group(1)), int(m.group(2))

def expected_figures(nb:Path) -> int:
    "Cells of an executed notebook copy that draw a figure (non-export cells calling a plot function)."
    cells = json.loads(nb.read_text())['cells'] if nb.exists() else []
    draws = lambda src: '#| export' not in src and re.search(r'\bplot_\w+\(|\bplt\.|\bsubplots\(', src)
    return sum(1 for c in cells if c['cell_type'] == 'code' and draws(''.join(c['source'])))

def main(docs='_docs', src='_docs_src'):
    docs = Path(docs); pages = sorted(docs.glob('*.html')); bad = []; n = 0
    if not (docs / 'index.html').exists(): sys.exit(f"{docs}/index.html is missing")
    for p in pages:
        pg = Page(); pg.feed(p.read_text())
        bad += [f"{p.name}: broken link {l}" for l in pg.links if not (docs / l).exists()]
        bad += [f"{p.name}: figure {i + 1} does not decode" for i, s in enumerate(pg.imgs) if not image_ok(s, docs)]
        n += len(pg.imgs); want = expected_figures(Path(src) / f'{p.stem}.ipynb')
        if len(pg.imgs) < want: bad.append(f"{p.name}: {len(pg.imgs)} figures, but {want} cells draw one")
    browser = shutil.which('chromium') is not None
    if browser:
        for p in pages:
            total, failed = browser_check(p)
            if failed: bad.append(f"{p.name}: {failed} of {total} images did not render in Chromium")
    if bad: sys.exit('\n'.join(bad))
    print(f"docs ok: {len(pages)} pages, {n} figures decode, all links resolve; "
          + ("every page loaded in headless Chromium with all images rendered" if browser else "Chromium not installed: browser check skipped"))

if __name__ == '__main__': main(*sys.argv[1:2])
