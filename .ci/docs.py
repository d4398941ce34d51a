"""Build the docs site without Quarto: every chapter executed and rendered to HTML by nbconvert into _docs/,
with a navigation index. A notebook that fails to execute fails the build. (nbdev's `proc_nbs` output is
meant for Quarto, which executes nothing; here the chapters themselves are executed, code and all.)

    python .ci/docs.py            # skips `slow` and `gpu` cells (minutes)
    python .ci/docs.py --slow     # also runs the slow cells (adds the SmolLM2 and EfficientNet figures; takes longer)
"""
import argparse, html, json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

root = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != 'MPLBACKEND'}   # the kernel's inline backend puts figures in the page
ENV.setdefault('OMP_NUM_THREADS', '1')   # one torch thread per kernel: kernels run side by side, one per core
NAV = '<nav style="font-family:sans-serif;padding:.5em 1em;background:#f4f4f4"><a href="index.html">ias_nb</a> · {links}</nav>'

def flagged_ids(nb:Path, flags) -> set:
    "Ids of the cells of `nb` carrying one of the nbdev test flags `flags`."
    cells = json.loads(nb.read_text())['cells']
    return {c.get('id') for c in cells if any(f'#| {f}' in ''.join(c['source']) for f in flags)}

def title(nb:Path) -> str:
    "The chapter title: the first markdown heading."
    for c in json.loads(nb.read_text())['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown' and src.startswith('# '): return src.splitlines()[0][2:]
    return nb.stem

def render(nb:Path, out:Path) -> Path:
    "Execute a notebook and write its HTML; raises on any cell error."
    r = subprocess.run([sys.executable, '-m', 'nbconvert', '--to', 'html', '--execute', '--ExecutePreprocessor.timeout=1800', '--TagRemovePreprocessor.remove_input_tags=remove_input',
                        '--output-dir', str(out), str(nb)], capture_output=True, text=True, env=ENV)
    if r.returncode: raise RuntimeError(f"{nb.name} failed to build:\n{r.stderr[-3000:]}")
    return out / f'{nb.stem}.html'

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0]); p.add_argument('--slow', action='store_true'); p.add_argument('--workers', type=int, default=2)
    a = p.parse_args()
    src, out = root / '_docs_src', root / '_docs'; src.mkdir(exist_ok=True); out.mkdir(exist_ok=True)   # _docs_src sits beside nbs/: same relative paths
    skip = () if a.slow else ('slow', 'gpu')
    chapters = sorted(root.glob('nbs/[0-9]*.ipynb'))
    for nb in chapters:                                                 # copies without the skipped cells; hidden cells show no input
        ids, d = flagged_ids(nb, skip), json.loads(nb.read_text())
        d['cells'] = [c for c in d['cells'] if c.get('id') not in ids]
        for c in d['cells']:
            if '#| hide' in ''.join(c['source']): c['metadata']['tags'] = sorted(set(c['metadata'].get('tags', [])) | {'remove_input'})
        (src / nb.name).write_text(json.dumps(d))
    with ThreadPoolExecutor(a.workers) as ex: pages = list(ex.map(lambda nb: render(src / nb.name, out), chapters))
    links = ' · '.join(f'<a href="{p.name}">{html.escape(nb.stem.split("_", 1)[0])}</a>' for nb, p in zip(chapters, pages))
    for p in pages: p.write_text(_with_nav(p.read_text(), NAV.format(links=links)))
    items = ''.join(f'<li><a href="{p.name}">{html.escape(title(nb))}</a></li>' for nb, p in zip(chapters, pages))
    (out / 'index.html').write_text('<!doctype html><html><head><meta charset="utf-8"><title>ias_nb</title></head>'
                                    '<body style="font-family:sans-serif;max-width:50em;margin:2em auto"><h1>ias_nb</h1>'
                                    '<p>Influence-Aligned Steering: activation steering and training-data influence under one first-order lens.</p>'
                                    f'<h2>Chapters</h2><ol start="0">{items}</ol><p>Built {"with" if a.slow else "without"} the slow cells.</p></body></html>')
    print(f"docs: {len(pages)} chapters in {out} ({'with' if a.slow else 'without'} slow cells)")

def _with_nav(page:str, nav:str) -> str:
    "Insert the navigation bar right after <body ...>."
    i = page.index('<body'); j = page.index('>', i) + 1
    return page[:j] + nav + page[j:]

if __name__ == '__main__': main()
