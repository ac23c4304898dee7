// The worker of main.mjs: its own Segmenter (its own copy of the model), bytes in, plain results out.
import { parentPort, workerData } from 'node:worker_threads';
import { Segmenter, counters } from 'pneumo-native';

const segmenter = await Segmenter.load(workerData.modelPath, { size: workerData.size, maxBatchSize: 4, maxWaitMs: 5 });
parentPort.on('message', async (m) => {
  if (m.type === 'close') {
    await segmenter.close(); // finishes what it accepted, frees the model
    parentPort.postMessage({ type: 'closed', liveTensors: counters().liveTensors });
    parentPort.close();
    return;
  }
  try {
    const r = await segmenter.predict(new Uint8Array(m.bytes));
    // Plain values only: tensors and models never cross threads.
    parentPort.postMessage({ type: 'result', id: m.id, result: { positive: r.positive, area: r.area, maxProbability: r.maxProbability, rle: r.rle, width: r.width, height: r.height } });
  } catch (err) {
    parentPort.postMessage({ type: 'error', id: m.id, message: err.message });
  }
});
parentPort.postMessage({ type: 'ready' });
