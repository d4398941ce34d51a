"""Build the docs site without Quarto: the README's tour (nbs/index.ipynb) as the landing page, the results page
(nbs/results.ipynb, which RESULTS.md shows on GitHub) and every chapter,
rendered to HTML by nbconvert into _docs/, each page with a sidebar of chapters and its equations typeset by KaTeX
from the npm registry (no CDN). Chapters whose committed outputs are current (`.ci/outputs.py`) are rendered from
them; the others are executed here, and a notebook that fails to execute fails the build.

    python .ci/docs.py            # skips `slow` and `gpu` cells (minutes)
    python .ci/docs.py --slow     # also runs the slow cells (adds the SmolLM2 and EfficientNet figures; longer)

KaTeX is the npm package, unpacked into _katex/ by .ci/run (`npm pack katex@0.16.22`, then `tar xzf`).
"""
import argparse, html, json, os, re, shutil, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from outputs import FAST, cells, flagged, stale_chapters

root = Path(__file__).resolve().parents[1]
KATEX = root / '_katex' / 'package' / 'dist'
KATEX_INSTALL = ('mkdir -p _katex && npm pack --silent katex@0.16.22 --pack-destination _katex '
                 '&& tar xzf _katex/katex-0.16.22.tgz -C _katex')
ENV = {k: v for k, v in os.environ.items() if k != 'MPLBACKEND'}   # the kernel's inline backend puts figures in the page
ENV.setdefault('OMP_NUM_THREADS', '1')   # one torch thread per kernel: kernels run side by side, one per core
HIDE_INPUT = ('#| hide', '#| echo: false')
PAGES = {'README.md': 'index.html', 'RESULTS.md': 'results.html'}   # .ci/readme.py's markdown pages and their site pages

MATH = """<link rel="stylesheet" href="katex/katex.min.css">
<script defer src="katex/katex.min.js"></script>
<script defer src="katex/contrib/auto-render.min.js"></script>
<script>document.addEventListener('DOMContentLoaded', () => renderMathInElement(document.body, {
  delimiters: [{left: '$$', right: '$$', display: true}, {left: '\\\\[', right: '\\\\]', display: true},
               {left: '$', right: '$', display: false}, {left: '\\\\(', right: '\\\\)', display: false}],
  throwOnError: false, errorColor: '#cc0001', strict: 'ignore'}));</script>"""
STYLE = """<style>
.ias-sidebar{position:fixed;top:0;left:0;bottom:0;width:16em;overflow-y:auto;box-sizing:border-box;padding:1em .8em;
  background:#f6f7f9;border-right:1px solid #ddd;font:14px/1.4 system-ui,sans-serif;z-index:10}
.ias-sidebar a{display:block;padding:.25em .5em;border-radius:4px;color:#234;text-decoration:none}
.ias-sidebar a:hover{background:#e6eaf0}.ias-sidebar a.current{background:#dde6ff;font-weight:600}
.ias-sidebar .home{font-size:1.2em;font-weight:700;margin-bottom:.5em}.ias-sidebar .n{color:#789;margin-right:.4em}
body{margin-left:16em !important}main{max-width:72em}
.ias-pager{display:flex;justify-content:space-between;margin:2em 1em;font:15px system-ui,sans-serif}
@media (max-width:800px){.ias-sidebar{position:static;width:auto;border:0}body{margin-left:0 !important}}
</style>"""

def cells_flagged(nb:Path, flags) -> set:
    "Ids of the cells of `nb` carrying one of the nbdev test flags `flags`."
    return {c.get('id') for c in cells(nb) if flagged(c, flags)}

def title(nb:Path) -> str:
    "The chapter title: the first markdown heading."
    for c in json.loads(nb.read_text())['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown' and src.startswith('# '): return src.splitlines()[0][2:].replace('`', '')
    return nb.stem

def copy_for_build(nb:Path, src:Path, skip) -> Path:
    "A copy of `nb` in `src` without the skipped cells; hidden and `echo: false` cells show no input."
    ids, d = cells_flagged(nb, skip), json.loads(nb.read_text())
    d['cells'] = [c for c in d['cells'] if c.get('id') not in ids]
    d['cells'] = [c for c in d['cells'] if not ''.join(c['source']).startswith('#| default_exp')]
    for c in d['cells']:
        text = ''.join(c['source'])
        if any(f in text for f in HIDE_INPUT):
            c['metadata']['tags'] = sorted(set(c['metadata'].get('tags', [])) | {'remove_input'})
        if c['cell_type'] == 'code' and re.search(r'(?m)^#\| *export', text):   # check_docs: defines, draws nothing
            c['metadata']['tags'] = sorted(set(c['metadata'].get('tags', [])) | {'export'})
        if c['cell_type'] == 'code':   # nbdev's directives are for the tools, not the reader
            c['source'] = ''.join(l for l in text.splitlines(keepends=True) if not l.startswith('#|'))
    (src / nb.name).write_text(json.dumps(d))
    return src / nb.name

def render(nb:Path, out:Path, execute:bool=True) -> Path:
    "Execute a notebook (or take its committed outputs) and write its HTML; raises on any cell error."
    tour = ['--no-prompt'] if nb.stem in ('index', 'results') else []   # these read as pages, not notebooks
    run = ['--execute'] if execute else []
    r = subprocess.run([sys.executable, '-m', 'nbconvert', '--to', 'html', *run, *tour,
                        '--ExecutePreprocessor.timeout=1800', '--TagRemovePreprocessor.remove_input_tags=remove_input',
                        '--output-dir', str(out), str(nb)], capture_output=True, text=True, env=ENV)
    if r.returncode: raise RuntimeError(f"{nb.name} failed to build:\n{r.stderr[-3000:]}")
    return out / f'{nb.stem}.html'

def sidebar(entries:list, current:str) -> str:
    "The chapter list, `current` (a page name) highlighted."
    def link(name, text, num='', cls=''):
        here = name == current
        attrs = f' class="{cls}{" current" if here else ""}"' + (' aria-current="page"' if here else '')
        return f'<a href="{name}"{attrs}>{num and f"<span class=n>{num}</span>"}{html.escape(text)}</a>'
    (home, home_text), *chapters = entries
    items = [link(home, home_text, cls='home')] + [link(n, t, num=n.split('_', 1)[0] if n[0].isdigit() else '')
                                                   for n, t in chapters]
    return '<nav class="ias-sidebar" aria-label="chapters">' + ''.join(items) + '</nav>'

def pager(entries:list, current:str) -> str:
    "Links to the previous and next page."
    names = [n for n, _ in entries]
    i = names.index(current)
    prev = f'<a href="{names[i - 1]}">← {html.escape(entries[i - 1][1])}</a>' if i > 0 else '<span></span>'
    nxt = f'<a href="{names[i + 1]}">{html.escape(entries[i + 1][1])} →</a>' if i + 1 < len(names) else '<span></span>'
    return f'<nav class="ias-pager">{prev}{nxt}</nav>'

def site_links(page:str) -> str:
    "Links written for GitHub (README.md, RESULTS.md, nbs/NAME.ipynb, each with an optional #anchor) as links between pages."
    page = re.sub(r'href="nbs/([\w.-]+)\.ipynb(#[^"]*)?"', r'href="\1.html\2"', page)
    return re.sub(r'href="(README\.md|RESULTS\.md)(#[^"]*)?"', lambda m: f'href="{PAGES[m[1]]}{m[2] or ""}"', page)

def finish(page:str, entries:list, current:str, title:str) -> str:
    "nbconvert's page with KaTeX instead of its MathJax from a CDN, links between pages, a sidebar and a pager."
    page = site_links(page)
    page = re.sub(r'<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->', '', page, flags=re.S)
    page = re.sub(r'<script src="https://[^"]*require[^"]*"></script>', '', page)   # for widgets, which we have none of
    page = re.sub(r'<title>.*?</title>', f'<title>{html.escape(title)} — ias_nb</title>', page, count=1, flags=re.S)
    page = page.replace('</head>', MATH + STYLE + '</head>', 1)
    body = page.index('>', page.index('<body')) + 1
    page = page[:body] + sidebar(entries, current) + page[body:]
    return page.replace('</body>', pager(entries, current) + '</body>', 1)

def copy_assets(out:Path):
    "KaTeX (script, style, fonts) and the figures in results/ that the landing and results pages show."
    if not KATEX.exists(): sys.exit(f"KaTeX is missing: run `{KATEX_INSTALL}` in {root} (as .ci/run does)")
    shutil.copytree(KATEX, out / 'katex', dirs_exist_ok=True)
    for f in (root / 'results').rglob('*.png'):
        (out / f.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, out / f.relative_to(root))

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--slow', action='store_true')
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--only', nargs='*', help='build only these pages (stems such as index 00_linalg): a quick look')
    a = p.parse_args()
    src, out = root / '_docs_src', root / '_docs'   # _docs_src sits beside nbs/: same relative paths
    src.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    copy_assets(out)
    skip = () if a.slow else ('slow', 'gpu')
    nbs = [root / 'nbs' / 'index.ipynb', root / 'nbs' / 'results.ipynb'] + sorted(root.glob('nbs/[0-9]*.ipynb'))
    if a.only: nbs = [nb for nb in nbs if nb.stem in a.only]
    copies = [copy_for_build(nb, src, skip) for nb in nbs]
    fresh = set() if a.slow else set(FAST) - set(stale_chapters())   # committed outputs that are current: not re-run
    with ThreadPoolExecutor(a.workers) as ex:
        pages = list(ex.map(lambda nb: render(nb, out, execute=nb.stem not in fresh), copies))
    entries = [(pg.name, title(nb)) for nb, pg in zip(nbs, pages)]
    if nbs[0].stem == 'index': entries[0] = ('index.html', 'ias_nb')
    for pg, (name, text) in zip(pages, entries): pg.write_text(finish(pg.read_text(), entries, name, text))
    print(f"docs: the tour, the results and {len(pages) - 2} chapters in {out} ({'with' if a.slow else 'without'} slow cells)")

if __name__ == '__main__': main()
