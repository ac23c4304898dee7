// Core bench: TypedArray -> Tensor -> TypedArray round trips in GB/s (payload bytes per second),
// against a plain Buffer.copy of the same bytes measured in the same run. A round trip is two
// copies by design (JS memory may change after the call, and a tensor may change after a read),
// so the best possible ratio against one copy is about 0.5; takeData() moves the tensor's storage
// out without a copy, so its round trip is one copy like the baseline.
import { Tensor } from '../dist/index.js';

/**
 * Seconds per call, best of 3 batches of at least minMs. Every call yields to the event loop
 * first (as real code does between requests), so deferred native finalizers get to run; the
 * baseline is timed the same way.
 */
async function timeIt(fn, minMs) {
  const tick = () => new Promise((resolve) => setImmediate(resolve));
  await fn();
  let best = Infinity;
  for (let round = 0; round < 3; round++) {
    let n = 0;
    let busy = 0;
    const roundStart = process.hrtime.bigint();
    while (Number(process.hrtime.bigint() - roundStart) / 1e6 < minMs) {
      await tick();
      const start = process.hrtime.bigint();
      await fn();
      busy += Number(process.hrtime.bigint() - start) / 1e9;
      n++;
    }
    best = Math.min(best, busy / n);
  }
  return best;
}

export async function run({ quick, log }) {
  const sizesMB = quick ? [1, 16] : [1, 16, 64];
  const minMs = quick ? 150 : 400;
  const entries = [];
  for (const mb of sizesMB) {
    const bytes = mb * 1024 * 1024;
    const src = new Float32Array(bytes / 4);
    for (let i = 0; i < src.length; i++) src[i] = i % 251;
    const srcBuf = Buffer.from(src.buffer);
    const dstBuf = Buffer.allocUnsafe(bytes);
    const copy = await timeIt(() => srcBuf.copy(dstBuf), minMs);
    const syncTrip = await timeIt(() => {
      const t = Tensor.from(src, [src.length]);
      const out = t.dataSync();
      t.dispose();
      return out;
    }, minMs);
    const asyncTrip = await timeIt(async () => {
      const t = Tensor.from(src, [src.length]);
      const out = await t.data();
      t.dispose();
      return out;
    }, minMs);
    const takeTrip = await timeIt(() => Tensor.from(src, [src.length]).takeData(), minMs);
    const gbps = (s) => bytes / s / 1e9;
    log(`${mb} MB: Buffer.copy ${gbps(copy).toFixed(2)} GB/s, round trip sync ${gbps(syncTrip).toFixed(2)}, async ${gbps(asyncTrip).toFixed(2)}, take ${gbps(takeTrip).toFixed(2)} GB/s`);
    const baseline = { name: 'Buffer.copy', value: gbps(copy) };
    entries.push(
      { group: 'core', name: `round trip ${mb} MB (dataSync)`, unit: 'GB/s', value: gbps(syncTrip), baseline, higherIsBetter: true, notes: 'two copies (in and out) vs one' },
      { group: 'core', name: `round trip ${mb} MB (await data())`, unit: 'GB/s', value: gbps(asyncTrip), baseline, higherIsBetter: true, notes: 'copy out on the thread pool' },
      { group: 'core', name: `round trip ${mb} MB (takeData)`, unit: 'GB/s', value: gbps(takeTrip), baseline, higherIsBetter: true, notes: 'one copy in, zero-copy out' },
    );
  }
  return entries;
}
