"Run ekfac_cells.md as the corpus notebook would: the chapter's code cells up to the EK-FAC heading, then ours."
import json, re, sys, time
nb_path = sys.argv[1]; md = sys.argv[2]; skip_slow = '--fast' in sys.argv
cells = json.load(open(nb_path))['cells']
stop = next(i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and ''.join(c['source']).startswith('## EK-FAC'))
ns = {}
for c in cells[:stop]:
    if c['cell_type'] != 'code': continue
    src = ''.join(c['source'])
    if '#| slow' in src or '#|slow' in src: continue
    exec(compile(re.sub(r'^#\|.*$', '', src, flags=re.M).replace('from nbdev', '#'), 'chapter', 'exec'), ns)
blocks = re.findall(r'```python (export|test)\n(.*?)```', open(md).read(), flags=re.S)
for kind, src in blocks:
    if skip_slow and '#| slow' in src: continue
    t = time.time(); exec(compile(src, 'ekfac_cells', 'exec'), ns); print(f'[{kind} cell ok, {time.time() - t:.1f} s]', flush=True)
