import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';

/** The elements as plain numbers (float64 holds every int32/float32 value exactly). */
function values(t: Tensor): number[] {
  return Array.from(t.dataSync('float64'));
}
import { loadBinding } from '../../src/native/binding.js';

describe('Tensor from/to TypedArrays', () => {
  const cases = [
    ['uint8', Uint8Array.from([0, 1, 127, 255])],
    ['int8', Int8Array.from([-128, -1, 0, 127])],
    ['int16', Int16Array.from([-32768, -1, 0, 32767])],
    ['int32', Int32Array.from([-2147483648, -1, 0, 2147483647])],
    ['int64', BigInt64Array.from([-(2n ** 62n), -1n, 0n, 2n ** 62n])],
    ['float32', Float32Array.from([-1.5, 0, 3.25, 1e30])],
    ['float64', Float64Array.from([-1.5, 0, Math.PI, 1e300])],
  ] as const;

  for (const [dtype, data] of cases) {
    it(`round-trips ${dtype} exactly`, async () => {
      const t = Tensor.from(data, [2, 2]);
      expect(t.dtype).toBe(dtype);
      expect(t.shape).toEqual([2, 2]);
      expect(t.device).toBe('cpu');
      expect(t.nbytes).toBe(data.byteLength);
      expect(t.dataSync()).toEqual(data);
      expect(await t.data()).toEqual(data);
      t.dispose();
    });
  }

  it('copies on creation, so the source array can be reused', () => {
    const src = Float32Array.from([1, 2, 3]);
    const t = Tensor.from(src);
    src[0] = 99;
    expect(values(t)).toEqual([1, 2, 3]);
  });

  it('reads a view (byteOffset) of a larger buffer correctly', () => {
    const buffer = new Float32Array([9, 9, 1, 2, 3, 4, 9]);
    const view = buffer.subarray(2, 6);
    const t = Tensor.from(view, [4]);
    expect(values(t)).toEqual([1, 2, 3, 4]);
  });

  it('widens Uint16Array (16-bit DICOM pixels) to int32 without losing values', () => {
    const t = Tensor.from(Uint16Array.from([0, 1, 4095, 65535]), [4]);
    expect(t.dtype).toBe('int32');
    expect(values(t)).toEqual([0, 1, 4095, 65535]);
    const f = Tensor.from(Uint16Array.from([65535]), [1], { dtype: 'float32' });
    expect(f.dataSync()[0]).toBe(65535);
  });

  it('converts dtypes on the way in and out in one pass', () => {
    const t = Tensor.from(Uint8Array.from([0, 128, 255]), [3], { dtype: 'float32' });
    expect(t.dtype).toBe('float32');
    expect(values(t)).toEqual([0, 128, 255]);
    expect(Array.from(t.dataSync('uint8'))).toEqual([0, 128, 255]);
    expect(t.dataSync('float64')).toBeInstanceOf(Float64Array);
    const half = Tensor.from([0.5, 2], [2], { dtype: 'float16' });
    expect(half.dtype).toBe('float16');
    expect(values(half)).toEqual([0.5, 2]);
  });

  it('accepts plain number arrays as float32 and empty tensors', () => {
    expect(Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]).shape).toEqual([2, 3]);
    const empty = Tensor.from(new Float32Array(0), [0, 3]);
    expect(empty.numel).toBe(0);
    expect(empty.dataSync().length).toBe(0);
  });

  it('rejects bad input in TypeScript with the parameter named', () => {
    expect(() => Tensor.from(new Float32Array(6), [4])).toThrow(/Shape \[4\] needs 4 elements but data has 6/);
    expect(() => Tensor.from(new Float32Array(4), [2, -2])).toThrow(/Expected an array of non-negative integers for shape/);
    expect(() => Tensor.from(new Uint32Array(4) as never)).toThrow(/for data/);
    expect(() => Tensor.from(new Float32Array(1), [1], { dtype: 'float8' as never })).toThrow(/for options.dtype but received "float8"/);
    expect(() => Tensor.from(new Float32Array(1), [1], { device: 'gpu' })).toThrow(/for options.device/);
  });

  it('explains a CUDA device on a machine without one', async () => {
    const info = await loadBinding().runtimeInfo();
    if (info.cudaAvailable) return; // only meaningful on CPU machines (CI)
    expect(() => Tensor.from([1], [1], { device: 'cuda' })).toThrow(/CUDA is not available/);
    await expect(Tensor.zeros([2], { device: 'cuda:0' })).rejects.toThrow(/CUDA is not available/);
  });
});

describe('Tensor operations', () => {
  it('adds, multiplies, reduces and reshapes', async () => {
    const a = Tensor.from([1, 2, 3, 4], [2, 2]);
    const b = Tensor.from([10, 20, 30, 40], [2, 2]);
    expect(values((await a.add(b)))).toEqual([11, 22, 33, 44]);
    expect(values((await a.mul(b)))).toEqual([10, 40, 90, 160]);
    expect(values((await a.matmul(b)))).toEqual([70, 100, 150, 220]);
    expect(await (await a.sum()).item()).toBe(10);
    expect(values((await a.sum(0)))).toEqual([4, 6]);
    expect((await a.mean([1], true)).shape).toEqual([2, 1]);
    expect(await (await b.max()).item()).toBe(40);
    expect(a.reshape([4]).shape).toEqual([4]);
    expect(a.reshape([-1, 1]).shape).toEqual([4, 1]);
    await expect(a.sum(5)).rejects.toThrow(/for dims/);
  });

  it('normalises uint8 image batches to float32', async () => {
    const images = Tensor.from(Uint8Array.from([0, 255, 51]), [1, 1, 1, 3]);
    const out = await images.normalizeImages(0.5, 0.25);
    expect(out.dtype).toBe('float32');
    const v = out.dataSync();
    expect(v[0]).toBeCloseTo(-2, 5);
    expect(v[1]).toBeCloseTo(2, 5);
    expect(v[2]).toBeCloseTo((0.2 - 0.5) / 0.25, 5);
    await expect(Tensor.from([1], [1]).normalizeImages()).rejects.toThrow(/expects a uint8 tensor/);
  });

  it('to() converts dtype and keeps the device', async () => {
    const t = await Tensor.from([1.7, -2.2], [2]).to('cpu', 'int32');
    expect(t.dtype).toBe('int32');
    expect(values(t)).toEqual([1, -2]);
  });
});

describe('LibTorch errors', () => {
  it('reject with LibTorch message and the process lives on', async () => {
    const a = Tensor.from(new Float32Array(6), [2, 3]);
    const b = Tensor.from(new Float32Array(6), [2, 3]);
    await expect(a.matmul(b)).rejects.toThrow('mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)');
    // The message carries no C++ backtrace.
    const err = await a.matmul(b).catch((e: Error) => e);
    expect((err as Error).message).not.toMatch(/frame #|Exception raised from/);
    await expect(a.add(Tensor.from(new Float32Array(4), [4]))).rejects.toThrow(/size of tensor a \(3\) must match the size of tensor b \(4\)/);
    expect(() => a.reshape([7])).toThrow(/shape '\[7\]' is invalid for input of size 6/);
    // Still alive and working.
    expect(values((await Tensor.from([1, 2], [1, 2]).matmul(Tensor.from([3, 4], [2, 1]))))).toEqual([11]);
  });
});

describe('dispose', () => {
  it('throws a JS error on use after dispose, in TS and in the native layer', async () => {
    const t = Tensor.from([1, 2, 3]);
    const native = t.native;
    t.dispose();
    t.dispose(); // idempotent
    expect(t.disposed).toBe(true);
    expect(() => t.shape).toThrow('Tensor has been disposed');
    expect(() => t.dataSync()).toThrow('Tensor has been disposed');
    await expect(t.data()).rejects.toThrow('Tensor has been disposed');
    expect(() => native.shape).toThrow('Tensor has been disposed');
    expect(() => native.toTypedArraySync()).toThrow('Tensor has been disposed');
    expect(() => native.to('cpu')).toThrow('Tensor has been disposed');
    const other = Tensor.from([1, 2, 3]);
    expect(() => loadBinding().binary('add', other.native, native)).toThrow('Tensor has been disposed');
    expect(String(t)).toBe('Tensor(disposed)');
  });

  it('lets an in-flight async read finish when the tensor is disposed meanwhile', async () => {
    const t = await Tensor.ones([256, 1024]);
    const pending = t.data();
    t.dispose();
    const data = await pending;
    expect(data.length).toBe(256 * 1024);
    expect(data[1000]).toBe(1);
  });

  it('supports `using` blocks (Symbol.dispose)', () => {
    let escaped: Tensor | undefined;
    {
      using t = Tensor.from([1]);
      escaped = t;
      expect(t.disposed).toBe(false);
    }
    expect(escaped.disposed).toBe(true);
  });

  it('the native constructor cannot be called from JS', () => {
    const { NativeTensor } = loadBinding() as unknown as { NativeTensor: new (...a: unknown[]) => unknown };
    expect(() => new NativeTensor({})).toThrow(/cannot be constructed from JS/);
  });
});

describe('takeData', () => {
  it('hands over sole-owned CPU storage without a copy and disposes the tensor', async () => {
    const { counters } = await import('../../src/core/runtime.js');
    const t = await Tensor.ones([512, 512]); // 1 MiB: a cached block
    const liveBefore = counters().cpuLiveBytes;
    const data = t.takeData();
    expect(t.disposed).toBe(true);
    expect(data).toBeInstanceOf(Float32Array);
    expect(data.length).toBe(512 * 512);
    expect(data[12345]).toBe(1);
    // No copy: the tensor's block is still live (now owned by the array), none was added.
    expect(counters().cpuLiveBytes).toBe(liveBefore);
    data[0] = 5; // writable, and independent of any tensor now
    expect(data[0]).toBe(5);
  });

  it('copies when the storage is shared (a view exists) or a conversion is asked', async () => {
    const t = Tensor.from([1, 2, 3, 4], [2, 2]);
    const view = t.reshape([4]);
    const copy = t.takeData('float32');
    expect(Array.from(copy)).toEqual([1, 2, 3, 4]);
    copy[0] = 100;
    expect(view.dataSync()[0]).toBe(1); // the view still sees its own data
    const u = Tensor.from([1.5, 2.5], [2]);
    expect(Array.from(u.takeData('int32'))).toEqual([1, 2]);
    expect(u.disposed).toBe(true);
    expect(() => u.takeData()).toThrow('Tensor has been disposed');
  });

  it('large copies use external memory that returns to the cache after GC', async () => {
    const { collectGarbage } = await import('../helpers/gc.js');
    const { counters } = await import('../../src/core/runtime.js');
    const t = await Tensor.ones([1024, 1024]);
    await collectGarbage();
    const before = counters().cpuLiveBytes;
    let arrays: Float32Array[] = [];
    for (let i = 0; i < 4; i++) arrays.push(t.dataSync('float32'));
    expect(counters().cpuLiveBytes - before).toBe(4 * 4 * 1024 * 1024);
    expect(arrays[3]![1000]).toBe(1);
    arrays = [];
    for (let i = 0; i < 20 && counters().cpuLiveBytes > before; i++) await collectGarbage();
    expect(counters().cpuLiveBytes).toBe(before);
    t.dispose();
  });
});
