/**
 * The smaller defects of issue 15: inputs that were accepted silently or reported without the
 * file, and the atomic-write path itself with faults injected at the file-system layer
 * (`/dev/full` gives ENOSPC on every write, without mounting anything).
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileWriteError, asFileWriteError, writeFully } from '../../src/core/atomic-write.js';
import { crc32, crc32Portable } from '../../src/core/checksum.js';
import { Tensor } from '../../src/core/tensor.js';
import { Model } from '../../src/models/model.js';
import { Segmenter } from '../../src/serve/segmenter.js';
import { runCli } from '../helpers/cli.js';
import { makeTrainFixture } from '../training/train-fixture.js';
import type { TrainFixture } from '../training/train-fixture.js';

let dir: string;
let fixture: TrainFixture;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pn-small-'));
  fixture = await makeTrainFixture(8, 64, 2);
}, 300_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  if (fixture) await rm(fixture.root, { recursive: true, force: true });
});

describe('the atomic-write path with injected faults', () => {
  it('a write to a full device (/dev/full) is a FileWriteError naming the file and ENOSPC', async () => {
    if (!existsSync('/dev/full')) return;
    const fh = await open('/dev/full', 'w');
    try {
      const err = await writeFully(fh, Buffer.alloc(100_000, 1), null, '/data/out.pnm').then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(FileWriteError);
      expect((err as FileWriteError).message).toBe('cannot write /data/out.pnm: no space left on the device (ENOSPC): the disk is full');
    } finally {
      await fh.close();
    }
  });

  it('maps native and Node errors to one error class, and leaves other errors alone', () => {
    const native = new Error('cannot write /x/.pneumo-tmp-last.ckpt.1.ab: No space left on device (ENOSPC)');
    expect(asFileWriteError(native, '/x/last.ckpt')).toMatchObject({ name: 'FileWriteError', code: 'ENOSPC', path: '/x/last.ckpt' });
    const node = Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' });
    expect((asFileWriteError(node, '/ro/a.csv') as Error).message).toBe('cannot write /ro/a.csv: the file system is read-only (EROFS)');
    const other = new TypeError('not a file-system error');
    expect(asFileWriteError(other, '/a')).toBe(other);
  });

  it('CRC-32 matches the zip reference value natively and portably', () => {
    const data = Buffer.from('123456789');
    expect(crc32(data)).toBe(0xcbf43926);
    expect(crc32Portable(data)).toBe(0xcbf43926);
    expect(crc32(data.subarray(4), crc32(data.subarray(0, 4)))).toBe(0xcbf43926);
  });
});

describe('Tensor.from', () => {
  it('rejects an array of non-numbers, naming the element', () => {
    expect(() => Tensor.from(['a', 'b'] as unknown as number[])).toThrow(/Expected a number .* for data\[0\] but received "a"/);
    expect(() => Tensor.from([1, 2, '3'] as unknown as number[])).toThrow(/data\[2\]/);
  });

  it('copies a TypedArray over a SharedArrayBuffer', async () => {
    const shared = new Float32Array(new SharedArrayBuffer(16));
    shared.set([1, 2, 3, 4]);
    const t = Tensor.from(shared, [2, 2]);
    expect(Array.from(await t.takeData('float32'))).toEqual([1, 2, 3, 4]);
  });
});

describe('Segmenter options', () => {
  it('an unknown option is an error naming the closest one', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 1 });
    const path = join(dir, 'm.ckpt');
    await model.save(path);
    expect(() => Segmenter.fromModel(model, { sise: 64 } as never)).toThrow(/Unknown option "sise" for the Segmenter \(did you mean "size"\?\)/);
    model.dispose();
    await expect(Segmenter.load(path, { maxBatch: 4 } as never)).rejects.toThrow(/Unknown option "maxBatch" for Segmenter\.load \(did you mean "maxBatchSize"\?\)/);
    const seg = await Segmenter.load(path, { size: 64 });
    await expect(seg.predict(new Uint8Array(64 * 64), { tta: false, sized: 64 } as never)).rejects.toThrow(/Unknown option "sized" for Segmenter\.predict/);
    seg.dispose();
  }, 120_000);
});

describe('score --pred with a repeated id', () => {
  it('is an error naming the file and both lines; --union-repeated unions them', async () => {
    const truth = join(dir, 'truth.csv');
    const pred = join(dir, 'pred.csv');
    await writeFile(truth, 'ImageId,EncodedPixels\na,-1\nb,1 2\n');
    await writeFile(pred, 'ImageId,EncodedPixels\na,-1\nb,1 2\nb,10 2\n');
    const r = await runCli(['score', '--truth', truth, '--pred', pred, '--size', '8']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${pred}:4: ImageId b repeated (first on line 3)`);
    const u = await runCli(['score', '--truth', truth, '--pred', pred, '--size', '8', '--union-repeated', '--json']);
    expect(u.code, u.stderr).toBe(0);
  });
});

describe('train with an unknown backbone', () => {
  it('is refused before any folder is made, with the closest name; --preview refuses it too', async () => {
    const output = join(dir, 'runs');
    const r = await runCli(['train', '--data-dir', fixture.data, '--backbone', 'unet_r81', '--img-size', '64', '--output', output, '--name', 'x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/model\.backbone: unknown backbone "unet_r81" \(did you mean 'unet_r18'\?\)/);
    expect(existsSync(output)).toBe(false);
    const p = await runCli(['train', '--data-dir', fixture.data, '--backbone', 'unet_r81', '--img-size', '64', '--preview', '2', '--preview-out', join(dir, 'p.png')]);
    expect(p.code).toBe(2);
    expect(p.stderr).toMatch(/unknown backbone "unet_r81"/);
    expect(existsSync(join(dir, 'p.png'))).toBe(false);
  });
});

describe('a resumed train after kill -9', () => {
  it('removes the temporary checkpoint files the killed run left', async () => {
    const output = join(dir, 'resume-runs');
    const args = ['train', '--data-dir', fixture.data, '--backbone', 'tiny_unet_r18', '--img-size', '64', '--epochs', '1', '--batch-size', '4', '--fold', '0', '--name', 'k', '--output', output, '--seed', '1'];
    const first = await runCli(args, { timeoutMs: 300_000 });
    expect(first.code, first.stderr).toBe(0);
    const fold = join(output, 'k', 'part0', 'fold0');
    // What a run killed inside a checkpoint save leaves: a temporary file of a process now gone.
    const { spawnSync } = await import('node:child_process');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    await writeFile(join(fold, `.pneumo-tmp-epoch001.ckpt.${dead}.0badc0de`), Buffer.alloc(4096));
    await writeFile(join(fold, `epoch001.ckpt.tmp-${dead}-42`), Buffer.alloc(4096));
    const resumed = await runCli([...args.slice(0, args.indexOf('--epochs') + 1), '2', ...args.slice(args.indexOf('--epochs') + 2), '--resume'], { timeoutMs: 300_000 });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(readdirSync(fold).filter((n) => n.includes('tmp'))).toEqual([]);
  }, 600_000);
});
