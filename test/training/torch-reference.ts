/**
 * Runs a snippet of Python against Debian's torch (/usr/bin/python3, python3-torch) on arrays
 * from the test, as an independent reference. Inputs become torch tensors named as given
 * (float64 unless a Float32Array is passed); the snippet fills `out[name]` with tensors or numbers,
 * which come back as Float64Arrays.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PYTHON = '/usr/bin/python3';

let available: boolean | undefined;

/** Whether /usr/bin/python3 can import torch (tests that need it are skipped, with a reason, when not). */
export function torchAvailable(): boolean {
  if (available === undefined) {
    const r = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
    available = r.status === 0;
  }
  return available;
}

export interface RefInput {
  data: Float32Array | Float64Array;
  shape: number[];
}

const PRELUDE = `
import json, sys, math
import numpy as np
import torch
torch.set_default_dtype(torch.float64)
work = sys.argv[1]
manifest = json.load(open(work + '/in.json'))
inp = {}
for name, m in manifest.items():
    a = np.fromfile(work + '/' + name + '.bin', dtype=m['dtype']).reshape(m['shape'])
    inp[name] = torch.from_numpy(a.copy())
out = {}
`;

const EPILOGUE = `
meta = {}
for name, v in out.items():
    t = v.detach().to(torch.float64).reshape(-1) if isinstance(v, torch.Tensor) else torch.tensor([float(v)], dtype=torch.float64)
    t.numpy().tofile(work + '/out_' + name + '.bin')
    meta[name] = t.numel()
json.dump(meta, open(work + '/out.json', 'w'))
`;

/** Runs `body` (indented at column 0) with `inp` and `out` in scope. */
export function runTorch(body: string, inputs: Record<string, RefInput>): Record<string, Float64Array> {
  const work = mkdtempSync(join(tmpdir(), 'pn-torchref-'));
  try {
    const manifest: Record<string, { dtype: string; shape: number[] }> = {};
    for (const [name, input] of Object.entries(inputs)) {
      manifest[name] = { dtype: input.data instanceof Float32Array ? 'float32' : 'float64', shape: input.shape };
      writeFileSync(join(work, `${name}.bin`), Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength));
    }
    writeFileSync(join(work, 'in.json'), JSON.stringify(manifest));
    writeFileSync(join(work, 'script.py'), PRELUDE + body + EPILOGUE);
    const r = spawnSync(PYTHON, [join(work, 'script.py'), work], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
    if (r.status !== 0) throw new Error(`python reference failed: ${r.stderr}`);
    const meta = JSON.parse(readFileSync(join(work, 'out.json'), 'utf8')) as Record<string, number>;
    const out: Record<string, Float64Array> = {};
    for (const name of Object.keys(meta)) {
      const bytes = readFileSync(join(work, `out_${name}.bin`));
      out[name] = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    }
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
