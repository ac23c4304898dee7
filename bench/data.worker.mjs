// Worker of bench/data.bench.mjs: DICOM -> 8-bit pixels at the target size (dicom.read, JPEG
// shrink-on-load) -> normalised Float32 written straight into the shared batch.
import { parentPort, workerData } from 'node:worker_threads';
import sharp from 'sharp';
import { dicom } from '../dist/index.js';

const MEAN = 0.485;
const STD = 0.229;
sharp.concurrency(1); // one core per worker
const batch = workerData.batch; // SharedArrayBuffer
parentPort.on('message', async ({ index, path, size }) => {
  try {
    const image = await dicom.read(path, { size });
    const out = new Float32Array(batch, index * size * size * 4, size * size);
    const scale = 1 / (255 * STD);
    const shift = MEAN / STD;
    const pixels = image.pixels;
    for (let i = 0; i < pixels.length; i += 1) out[i] = pixels[i] * scale - shift;
    parentPort.postMessage({ index });
  } catch (err) {
    parentPort.postMessage({ index, error: err.message });
  }
});
