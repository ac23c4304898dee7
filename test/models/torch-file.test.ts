/**
 * `torch.save` files read without Python: the zip and the legacy formats as Python's torch writes
 * them (OrderedDict state dicts with `_metadata`, views, transposes, channels-last, every common
 * dtype, nesting under "state_dict", parameters, pickle protocols 2 and 4), LibTorch's own files,
 * and clear errors naming the file for legacy tar archives, truncated, corrupted or foreign files.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { Model } from '../../src/models/model.js';
import { readTorchFile, readTorchFileIndex, TorchFileError } from '../../src/models/torch-file.js';
import { loadBinding } from '../../src/native/binding.js';
import { hasPythonTorch, python } from './python.js';

const dir = mkdtempSync(join(tmpdir(), 'pn-torchfile-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Expected = Record<string, { dtype: string; shape: number[]; values: number[] }>;

async function read(path: string): Promise<Map<string, Tensor>> {
  return new Map((await readTorchFile(path)).map(([k, t]) => [k, new Tensor(t)]));
}

async function values(t: Tensor): Promise<number[]> {
  const kind = t.dtype === 'int64' ? 'int64' : t.dtype === 'bool' || t.dtype === 'uint8' ? 'uint8' : t.dtype === 'int32' ? 'int32' : 'float32';
  return Array.from(await t.data(kind as 'float32'), Number);
}

const WRITE = `
import collections, json, sys, torch
out = sys.argv[1]
torch.manual_seed(1)
base = torch.arange(24, dtype=torch.float32)
sd = collections.OrderedDict()
sd['plain'] = torch.randn(3, 4)
sd['transposed'] = torch.randn(3, 5).t()
sd['view'] = base[5:11].view(2, 3)           # storage offset, shared storage
sd['strided'] = base.view(4, 6)[:, ::2]      # a non-contiguous slice of the same storage
sd['channels_last'] = torch.randn(2, 3, 2, 2).contiguous(memory_format=torch.channels_last)
sd['half'] = torch.tensor([1.5, -2.25], dtype=torch.float16)
sd['bf16'] = torch.tensor([3.0, 0.5], dtype=torch.bfloat16)
sd['double'] = torch.tensor([1e-3, 2.5], dtype=torch.float64)
sd['long'] = torch.tensor([-(2 ** 40), 7])
sd['int'] = torch.tensor([-3, 4], dtype=torch.int32)
sd['uint8'] = torch.tensor([0, 255], dtype=torch.uint8)
sd['bool'] = torch.tensor([True, False, True])
sd['scalar'] = torch.tensor(42)
sd['empty'] = torch.zeros(0, 3)
sd['param'] = torch.nn.Parameter(torch.ones(2))
sd._metadata = collections.OrderedDict([('', {'version': 1})])
expected = {k: {'dtype': str(v.dtype).replace('torch.', ''), 'shape': list(v.shape), 'values': v.detach().double().flatten().tolist()} for k, v in sd.items()}
json.dump(expected, open(out + '/expected.json', 'w'))
torch.save(sd, out + '/zip.pt')
torch.save(sd, out + '/legacy.pt', _use_new_zipfile_serialization=False)
torch.save(sd, out + '/zip-p4.pt', pickle_protocol=4)
torch.save(sd, out + '/legacy-p4.pt', _use_new_zipfile_serialization=False, pickle_protocol=4)
torch.save({'epoch': 3, 'state_dict': sd, 'optimizer': {'lr': 0.1}}, out + '/nested.pt')
import pickle
pickle.dump({'a': 1}, open(out + '/plain.pkl', 'wb'), protocol=2)
`;

function expectError(path: string, pattern: RegExp): void {
  let caught: unknown;
  try {
    readTorchFileIndex(path);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(TorchFileError);
  expect((caught as Error).message.startsWith(`${path}: `)).toBe(true);
  expect((caught as Error).message).toMatch(pattern);
}

describe.skipIf(!hasPythonTorch)('torch.save files written by Python', () => {
  const expected = (() => {
    let cache: Expected | undefined;
    return (): Expected => {
      if (!cache) {
        const script = join(dir, 'write.py');
        writeFileSync(script, WRITE);
        python([script, dir]);
        cache = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
      }
      return cache;
    };
  })();

  it.each(['zip.pt', 'legacy.pt', 'zip-p4.pt', 'legacy-p4.pt', 'nested.pt'])('%s: every tensor with its dtype, shape and values', async (file) => {
    const want = expected();
    const index = readTorchFileIndex(join(dir, file));
    expect(index.format).toBe(file.startsWith('legacy') ? 'legacy' : 'zip');
    expect(index.entries.find((e) => e.name === 'transposed')!.strides).toEqual([1, 5]);
    const got = await read(join(dir, file));
    expect([...got.keys()]).toEqual(Object.keys(want));
    for (const [name, w] of Object.entries(want)) {
      const t = got.get(name)!;
      expect(t.dtype, name).toBe(w.dtype);
      expect(t.shape, name).toEqual(w.shape);
      const v = await values(t);
      for (let i = 0; i < w.values.length; i++) expect(v[i], `${name}[${i}]`).toBeCloseTo(w.values[i]!, 6);
    }
  });

  it('loads a real model.state_dict() (an OrderedDict with _metadata, which torch::pickle_load rejects)', async () => {
    python(['-c', 'import sys, torch, torchvision; torch.save(torchvision.models.resnet18().state_dict(), sys.argv[1])', join(dir, 'r18.pth')]);
    const model = await Model.create({ backbone: 'unet_r18' });
    const report = await model.loadStateDict(join(dir, 'r18.pth'), { prefix: 'encoder.' });
    expect(report.loaded).toBe(120); // 122 tensors, fc.weight and fc.bias not in the encoder
    expect(report.unexpected.sort()).toEqual(['encoder.fc.bias', 'encoder.fc.weight']);
    model.dispose();
  });

  it('names the file for truncated and corrupted files', () => {
    expected();
    const zip = readFileSync(join(dir, 'zip.pt'));
    const legacy = readFileSync(join(dir, 'legacy.pt'));
    writeFileSync(join(dir, 'zip-cut.pt'), zip.subarray(0, Math.floor(zip.length / 2)));
    expectError(join(dir, 'zip-cut.pt'), /zip file without its central directory: truncated or corrupted/);
    writeFileSync(join(dir, 'legacy-cut.pt'), legacy.subarray(0, legacy.length - 10));
    expectError(join(dir, 'legacy-cut.pt'), /ends (before|inside) storage .*truncated/);
    writeFileSync(join(dir, 'legacy-cut-pickle.pt'), legacy.subarray(0, 200));
    expectError(join(dir, 'legacy-cut-pickle.pt'), /the pickle ends early/);
    const flipped = Buffer.from(legacy);
    flipped.fill(0xff, 100, 140); // inside the main pickle: opcodes that do not exist
    writeFileSync(join(dir, 'legacy-bad.pt'), flipped);
    expect(() => readTorchFileIndex(join(dir, 'legacy-bad.pt'))).toThrow(TorchFileError);
    writeFileSync(join(dir, 'empty.pth'), '');
    expectError(join(dir, 'empty.pth'), /is 0 bytes long: not a torch.save file/);
    writeFileSync(join(dir, 'page.pth'), '<!DOCTYPE html><html><body>Access denied</body></html>');
    expectError(join(dir, 'page.pth'), /is text \(HTML or XML\).*error page/);
    writeFileSync(join(dir, 'noise.pth'), Buffer.from('0123456789abcdef'));
    expectError(join(dir, 'noise.pth'), /is not a torch.save file \(neither zip nor legacy format; first bytes 3031323334353637\)/);
    expectError(join(dir, 'plain.pkl'), /is a pickle file but not a torch.save file/);
    const tar = Buffer.alloc(1024);
    tar.write('ustar', 257, 'latin1');
    writeFileSync(join(dir, 'old.tar.pth'), tar);
    expectError(join(dir, 'old.tar.pth'), /tar archive .*convert it with Python, torch.save\(torch.load\(f\), "new.pth"\)/);
    expectError(join(dir, 'nope.pth'), /cannot be opened \(ENOENT\)/);
  });
});

describe('files written by LibTorch', () => {
  it('reads what writeStateDict / saveStateDict write, and calls a checkpoint a TorchScript archive', async () => {
    const path = join(dir, 'native.pt');
    const a = Tensor.from(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
    await loadBinding().writeStateDict(path, [['a', a.native], ['n', (await Tensor.zeros([], { dtype: 'int64' })).native]]);
    const got = await read(path);
    expect(got.get('a')!.shape).toEqual([2, 3]);
    expect(await values(got.get('a')!)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(got.get('n')!.shape).toEqual([]);

    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 1 });
    const weights = join(dir, 'tiny.pt');
    await model.saveStateDict(weights);
    const again = await Model.create({ backbone: 'tiny_unet_r18', seed: 2 });
    const report = await again.loadStateDict(weights, { strict: true });
    expect(report.loaded).toBe((await model.stateDict()).size);
    const ckpt = join(dir, 'tiny.ckpt');
    await model.save(ckpt);
    copyFileSync(ckpt, join(dir, 'tiny-ckpt.pth'));
    expectError(join(dir, 'tiny-ckpt.pth'), /is a TorchScript archive \(torch.jit.save\), not a torch.save state dict/);
    model.dispose();
    again.dispose();
  });
});
