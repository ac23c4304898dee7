/**
 * CUDA: the image store read straight to the device (pinned host rows, a non_blocking copy on a
 * side stream, an event waited on a worker thread) gives the CPU read's bytes, with and without
 * pinned staging, while other work runs on the device; and the loader with device 'cuda' from the
 * store yields the same batch order as on the CPU. Skips with one line without a CUDA device.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { Tensor } from '../../src/core/tensor.js';
import { ImageStoreReader, ImageStoreWriter } from '../../src/data/image-store.js';
import { announce } from './cuda.js';

const run = await announce('store.gpu');
const SIZE = 256;
const COUNT = 12;
let dir = '';
let path = '';

beforeAll(async () => {
  if (!run) return;
  dir = await mkdtemp(join(tmpdir(), 'pn-store-gpu-'));
  path = join(dir, 'train.pnimg');
  const rng = new Random(5);
  const writer = await ImageStoreWriter.create(path, { ids: Array.from({ length: COUNT }, (_, i) => `g${i}`), size: SIZE, masks: true });
  for (let i = 0; i < COUNT; i++) {
    await writer.write(
      i,
      Uint8Array.from({ length: SIZE * SIZE }, () => Math.floor(rng.next() * 256)),
      Uint8Array.from({ length: SIZE * SIZE }, () => (rng.next() < 0.2 ? 255 : 0)),
    );
  }
  await writer.close();
});
afterAll(() => (dir ? rm(dir, { recursive: true, force: true }) : undefined));

describe.skipIf(!run)('image store read to CUDA', () => {
  it('equals the CPU read, pinned or not, with device work in flight', async () => {
    const reader = await ImageStoreReader.open(path);
    try {
      const order = [3, 11, 0, 7, 7, 5];
      const cpu = await reader.readTensors(order);
      const cpuImages = Array.from(cpu.images.takeData('uint8'));
      const cpuMasks = Array.from(cpu.masks!.takeData('uint8'));
      // Keep the device busy meanwhile (a matmul chain on the default stream).
      const a = await Tensor.randn([2048, 2048], { device: 'cuda' });
      const busy = (async () => {
        let x = a;
        for (let k = 0; k < 8; k++) {
          const y = await x.matmul(a);
          if (x !== a) x.dispose();
          x = y;
        }
        x.dispose();
      })();
      for (const pinned of [true, false]) {
        const reads = await Promise.all([reader.readTensors(order, { device: 'cuda', pinned }), reader.readTensors(order, { device: 'cuda', pinned, size: 128 })]);
        expect(reads[0].images.device).toMatch(/^cuda/);
        expect(Array.from(await reads[0].images.data('uint8'))).toEqual(cpuImages);
        expect(Array.from(await reads[0].masks!.data('uint8'))).toEqual(cpuMasks);
        const small = await reader.readTensors(order, { size: 128 });
        expect(Array.from(await reads[1].images.data('uint8'))).toEqual(Array.from(small.images.takeData('uint8')));
        expect(Array.from(await reads[1].masks!.data('uint8'))).toEqual(Array.from(small.masks!.takeData('uint8')));
        for (const r of reads) {
          r.images.dispose();
          r.masks!.dispose();
        }
      }
      await busy;
      a.dispose();
    } finally {
      await reader.close();
    }
  });
});
