"""Check the built docs site: every page parses, every link between pages resolves (with its #anchor, when it names
one), no link points at a repository file the site does not hold (.md, .ipynb), every figure is a
decodable image (embedded data URI or file), no script or style comes from another host, and — when Debian's
`chromium` is installed — every page loads in headless Chromium with all its images rendered (naturalWidth > 0)
and its math typeset: no visible text outside code still reads as LaTeX (`$`, `\\frac`, ...) and KaTeX
reports no error.

    python .ci/check_docs.py [DOCS]      # DOCS defaults to _docs
    python .ci/check_docs.py --self-test # the math check passes a typeset page and fails a broken one
"""
import base64, html, io, json, re, shutil, subprocess, sys, tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit
from PIL import Image

class Page(HTMLParser):
    "Collects <img src>, the local <a href> (page, anchor) and the anchors (id, name) of a page."
    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.remote, self.anchors, self.repo_files = [], [], [], set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.anchors |= {a[k] for k in ('id', 'name') if a.get(k)}
        if tag == 'img': self.imgs.append(a.get('src', ''))
        url = a.get('src', '') if tag == 'script' else a.get('href', '') if a.get('rel') == 'stylesheet' else ''
        if tag in ('script', 'link') and '://' in url: self.remote.append(url)
        href = a.get('href') or '' if tag == 'a' else ''
        if not href or re.match(r'[a-z]+:', href): return     # https:, mailto:, ... are not checked here
        u = urlsplit(href)
        if u.path.endswith('.html'): self.links.append((u.path, u.fragment))
        elif u.path.endswith(('.md', '.ipynb')): self.repo_files.append(href)

def image_ok(src:str, folder:Path) -> bool:
    "Whether `src` decodes to a non-empty image."
    try:
        data = base64.b64decode(src.split(',', 1)[1]) if src.startswith('data:image') else (folder / src).read_bytes()
        if src.startswith('data:image/svg'): return b'<svg' in data
        im = Image.open(io.BytesIO(data)); im.load(); return im.size[0] > 10 and im.size[1] > 10
    except Exception: return False

PROBE = """<script>window.addEventListener('load', () => { const im = [...document.images];
  document.body.setAttribute('data-imgcheck', im.length + ' ' + im.filter(i => !(i.complete && i.naturalWidth > 0)).length);
  const skip = 'script,style,pre,code,textarea,.katex,nav';
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT), raw = [];
  while (walk.nextNode()) { const t = walk.currentNode, el = t.parentElement;
    if (!el || el.closest(skip) || !el.getClientRects().length) continue;
    const m = t.textContent.match(/.{0,30}(\\$|\\\\[A-Za-z]+|\\^\\{|_\\{).{0,30}/s);
    if (m) raw.push(m[0].replace(/\\s+/g, ' ')); }
  for (const e of document.querySelectorAll('.katex-error, .katex [style*="204, 0, 1"]'))   // errorColor set by docs.py
    raw.push('KaTeX error: ' + (e.getAttribute('title') || 'unknown command ' + e.textContent));
  document.body.setAttribute('data-mathcheck', JSON.stringify(raw.slice(0, 5))); });</script>"""

CHROMIUM = ['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
            '--disable-component-update', '--no-first-run', '--virtual-time-budget=20000', '--dump-dom']

def browser_check(page:Path) -> tuple:
    "(images, images that failed to render, snippets of raw LaTeX) of `page` loaded in headless Chromium."
    with tempfile.NamedTemporaryFile('w', suffix='.html', dir=page.parent, delete=False) as f:
        f.write(page.read_text().replace('</body>', PROBE + '</body>')); probe = Path(f.name)
    try:
        r = subprocess.run(CHROMIUM + [probe.resolve().as_uri()], capture_output=True, text=True, timeout=300)
    finally: probe.unlink()
    m = re.search(r'data-imgcheck="(\d+) (\d+)"', r.stdout)
    math = re.search(r"data-mathcheck='([^']*)'|data-mathcheck=\"([^\"]*)\"", r.stdout)
    if not m or not math: raise RuntimeError(f"{page.name} did not load in Chromium: {r.stderr[-500:]}")
    return int(m.group(1)), int(m.group(2)), json.loads(html.unescape(math.group(1) or math.group(2)))

def expected_figures(nb:Path) -> int:
    "Cells of an executed notebook copy that draw a figure (non-export cells calling a plot function)."
    cells = json.loads(nb.read_text())['cells'] if nb.exists() else []
    draws = lambda src: '#| export' not in src and re.search(r'\bplot_\w+\(|\bplt\.|\bsubplots\(', src)
    exported = lambda c: 'export' in c['metadata'].get('tags', [])   # docs.py tags them as it strips the directives
    return sum(1 for c in cells if c['cell_type'] == 'code' and not exported(c) and draws(''.join(c['source'])))

def anchors(page:Path) -> set:
    "The ids and names a page's links can point at."
    pg = Page(); pg.feed(page.read_text()); return pg.anchors

def main(docs='_docs', src='_docs_src'):
    docs = Path(docs); pages = sorted(docs.glob('*.html')); bad = []; n = 0; ids = {}
    if not (docs / 'index.html').exists(): sys.exit(f"{docs}/index.html is missing")
    for p in pages:
        pg = Page(); pg.feed(p.read_text())
        for path, frag in pg.links:
            if not (docs / path).exists(): bad.append(f"{p.name}: broken link {path}")
            elif frag and frag not in ids.setdefault(path, anchors(docs / path)):
                bad.append(f"{p.name}: link {path}#{frag}: {path} has no anchor {frag!r}")
        bad += [f"{p.name}: link {l} to a repository file, not a page of the site" for l in pg.repo_files]
        bad += [f"{p.name}: figure {i + 1} does not decode" for i, s in enumerate(pg.imgs) if not image_ok(s, docs)]
        bad += [f"{p.name}: loads {r} from another host (install it from a package registry instead)" for r in pg.remote]
        n += len(pg.imgs)
        want = expected_figures(Path(src) / f'{p.stem}.ipynb')
        if len(pg.imgs) < want: bad.append(f"{p.name}: {len(pg.imgs)} figures, but {want} cells draw one")
    browser = shutil.which('chromium') is not None
    if browser:
        for p in pages:
            total, failed, raw = browser_check(p)
            if failed: bad.append(f"{p.name}: {failed} of {total} images did not render in Chromium")
            bad += [f"{p.name}: raw LaTeX shown in the page: {t!r}" for t in raw]
    if bad: sys.exit('\n'.join(bad))
    print(f"docs ok: {len(pages)} pages, {n} figures decode, all links resolve; "
          + ("every page loaded in headless Chromium with all images rendered and its math typeset" if browser else "Chromium not installed: browser check skipped"))

def self_test():
    "The math check passes a page that KaTeX typesets and fails the same page without KaTeX, or with bad LaTeX."
    if shutil.which('chromium') is None: sys.exit("--self-test needs chromium")
    docs = Path(__file__).resolve().parents[1] / '_docs'
    if not (docs / 'katex').exists(): sys.exit("--self-test needs _docs/katex: run .ci/docs.py first")
    head = re.search(r'<link rel="stylesheet" href="katex/.*?</script>(?=<style>)', (docs / 'index.html').read_text(), re.S)
    body = r'<p>The IAS vector $\Delta h^* = J_h^+ v$ and $$\frac{\|P_h v\|}{\|v\|}$$</p><pre>$ not math</pre>'
    head = head.group(0).replace('katex/', '../katex/')
    pages = {'good': head + body, 'no_katex': body, 'bad_latex': head + body.replace('frac', 'fracc')}
    found = {}
    with tempfile.TemporaryDirectory(dir=docs) as d:
        for name, inner in pages.items():
            f = Path(d) / f'{name}.html'
            f.write_text(f'<!doctype html><html><head><meta charset="utf-8"></head><body>{inner}</body></html>')
            found[name] = browser_check(f)[2]
    assert found['good'] == [], found['good']
    assert found['no_katex'] and found['bad_latex'], found
    print("self-test ok: a typeset page passes; raw LaTeX ({}) and a KaTeX error ({}) fail".format(
        found['no_katex'][0], found['bad_latex'][-1]))

if __name__ == '__main__':
    if sys.argv[1:] == ['--self-test']: self_test()
    else: main(*sys.argv[1:2])
