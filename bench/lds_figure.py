"""results/lds.png: LDS per method with its 95% interval over queries, the floor (random score) and the ceilings drawn
in, for the language-model bench (results/lds.json) and the digits benches (results/lds_digits_*.json).

    PYTHONPATH=. python bench/lds_figure.py
"""
import json
from pathlib import Path
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt

def panel(ax, title, rows, ceilings, key=lambda r: r.get('lds')):
    "One horizontal bar chart: a method per row (failed ones named), ceilings as shaded bands."
    names, vals = [], []
    for r in rows:
        v = key(r) if 'error' not in r else None
        names.append(r['method'] + ('' if v else '  (failed)' if 'error' in r else '  (n/a)')); vals.append(v)
    y = range(len(rows))
    for i, v in zip(y, vals):
        if v: ax.errorbar(v[0], i, xerr=[[v[0] - v[1]], [v[2] - v[0]]], fmt='o', color='C3' if 'random' in names[i] else 'C0', capsize=3)
    for j, (k, c) in enumerate(ceilings.items()):
        if c: ax.axvspan(c[1], c[2], color=f'C{j + 1}', alpha=0.2, label=f'ceiling: {k} {c[0]:.2f}')
    ax.axvline(0, color='k', lw=0.5)
    ax.set_yticks(list(y)); ax.set_yticklabels(names, fontsize=7); ax.invert_yaxis()
    ax.set_xlim(-0.3, 1.0); ax.set_title(title, fontsize=9); ax.legend(fontsize=6, loc='best'); ax.set_xlabel('LDS')

def main():
    panels = []
    if Path('results/lds.json').exists():
        d = json.loads(Path('results/lds.json').read_text())
        for g, what in [('losses', 'held-out paragraphs\' losses'), ('steers', 'steers\' f_s (centred logits)')]:
            panels.append((f"small GPT-2, {d['sizes']['N']} docs, M = {d['sizes']['M']}: {what}", d['rows'],
                           {k: v[g] for k, v in d['ceilings'].items()}, lambda r, g=g: r.get(g)))
    for f in sorted(Path('results').glob('lds_digits_*.json')):
        d = json.loads(f.read_text())
        for b in d['benchmarks']:
            panels.append((f"digits, {b['model']}, M = {d['sizes']['M']}, {d['sizes']['queries']} test losses", b['rows'],
                           b['ceilings'], lambda r: r.get('lds')))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)))
    for ax, p in zip(axes if len(panels) > 1 else [axes], panels): panel(ax, *p)
    fig.tight_layout(); fig.savefig('results/lds.png', dpi=110)
    print('wrote results/lds.png')

if __name__ == '__main__': main()
