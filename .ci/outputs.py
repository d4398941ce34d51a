"""Keep the outputs of the committed notebooks fresh, so the book reads on GitHub and in Jupyter without running it.

Chapters that run in seconds (`FAST`) are executed with their `slow` and `gpu` cells skipped and saved with their
outputs (text and figures); `.ci/outputs.json` records, per chapter, the hash of what its outputs come from: its own
cells and the modules of the chapters it builds on (data flows one way, so chapter k depends on modules ≤ k).

    python .ci/outputs.py                # execute the stale chapters, write their outputs and hashes
    python .ci/outputs.py 03_duality     # (re-)execute one chapter
    python .ci/outputs.py --check        # CI: fail if a chapter's outputs are stale or missing
"""
import argparse, hashlib, json, os, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]
LOCK = root / '.ci' / 'outputs.json'
SLOW = ('slow', 'gpu')
FAST = ['00_linalg', '01_toy_linear', '02_jacobians', '03_duality', '04_models', '04a_lm', '05_alignment', '06_influence',
        '07_attribution', '08_spectral', '09_bounds', '09a_stats', '10_steering', '10a_formats', '10b_distill',
        '11_corpus', '11a_precondition', '11b_trace', '11c_ranking', '11d_validation', '12_index', '13_experiments',
        '14_cli']   # their non-slow cells run in seconds

def cells(nb:Path) -> list: return json.loads(nb.read_text())['cells']

def module(nb:Path):
    "The module a chapter exports (`#| default_exp`), or None."
    for c in cells(nb):
        for l in ''.join(c['source']).splitlines():
            if l.startswith('#| default_exp'): return l.split()[-1]

def source_hash(nb:Path) -> str:
    "Hash of the chapter's cells and of the modules exported by it and the chapters before it."
    h = hashlib.sha256(json.dumps([(c['cell_type'], ''.join(c['source'])) for c in cells(nb)]).encode())
    for prev in sorted(root.glob('nbs/[0-9]*.ipynb')):
        if prev.name <= nb.name and (m := module(prev)): h.update((root / 'ias_nb' / f'{m}.py').read_bytes())
    return h.hexdigest()[:16]

def stale_chapters(lock:dict=None) -> list:
    "The chapters of `FAST` whose committed outputs do not come from their current sources."
    lock = json.loads(LOCK.read_text()) if lock is None and LOCK.exists() else lock or {}
    missing = [s for s in FAST if not (root / 'nbs' / f'{s}.ipynb').exists()]
    if missing: sys.exit(f"outputs.py: FAST names chapters that do not exist: {missing}")
    return [s for s in FAST if lock.get(s) != source_hash(root / 'nbs' / f'{s}.ipynb')]

def flagged(c:dict, flags=SLOW) -> bool:
    "Whether cell `c` carries one of the nbdev test flags `flags` (default: the cells skipped here)."
    return any(f'#| {f}' in ''.join(c['source']) for f in flags)

def execute(nb:Path):
    "Run the chapter's non-slow cells in a fresh kernel and store their outputs in the notebook (others: none)."
    import nbformat
    from nbclient import NotebookClient
    from nbdev.clean import nbdev_clean
    d = nbformat.read(nb, as_version=4)
    run = nbformat.from_dict({**d, 'cells': [c for c in d.cells if not flagged(c)]})
    NotebookClient(run, timeout=1800, kernel_name='python3', resources={'metadata': {'path': str(nb.parent)}}).execute()
    outs = {c.id: c.outputs for c in run.cells if c.cell_type == 'code'}
    for c in d.cells:
        if c.cell_type == 'code': c.outputs, c.execution_count = outs.get(c.id, []), None
    nbformat.write(d, nb)
    nbdev_clean(str(nb))

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('chapters', nargs='*', help='chapter stems to execute (default: the stale ones of FAST)')
    p.add_argument('--check', action='store_true', help='fail if a chapter in FAST has stale or missing outputs')
    a = p.parse_args()
    os.environ.pop('MPLBACKEND', None)                  # the kernel's inline backend puts figures in the notebook
    os.environ.update(TQDM_DISABLE='1', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1',   # no progress widgets, no retries,
                      PYTHONWARNINGS='ignore::FutureWarning,ignore::DeprecationWarning',  # no dependencies' deprecations
                      OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    lock = json.loads(LOCK.read_text()) if LOCK.exists() else {}
    stale = stale_chapters(lock)
    if a.check:
        if stale: sys.exit(f"notebook outputs are stale or missing for {stale}: run `python .ci/outputs.py` and commit")
        return print(f"outputs fresh: {len(FAST)} chapters")
    for s in a.chapters or stale:
        nb = root / 'nbs' / f'{s}.ipynb'; print(f"executing {s} ...", flush=True)
        execute(nb); lock[s] = source_hash(nb)
    LOCK.write_text(json.dumps(dict(sorted(lock.items())), indent=1) + '\n')

if __name__ == '__main__': main()
