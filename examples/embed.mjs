#!/usr/bin/env node
// Embedding pneumo-native in a Node service: one Segmenter shared by concurrent callers.
//
//   node examples/embed.mjs MODEL IMAGE... [--size 512] [--tta] [--timeout-ms 10000]
//
// MODEL is a checkpoint or TorchScript export (`Model.save` / `pneumo-native train`); each IMAGE a
// DICOM, PNG or JPEG file. The images are segmented concurrently, as requests of a service would
// be: the Segmenter micro-batches them into shared forward passes. Prints one JSON object on stdout
// (a result per image, the segmenter's counters) and a line per image on stderr.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { Segmenter, SegmenterError } from 'pneumo-native';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    size: { type: 'string', default: '512' },
    tta: { type: 'boolean', default: false },
    'timeout-ms': { type: 'string', default: '10000' },
  },
});
if (positionals.length < 2) {
  process.stderr.write('usage: node examples/embed.mjs MODEL IMAGE... [--size 512] [--tta] [--timeout-ms 10000]\n');
  process.exit(2);
}
const [modelPath, ...files] = positionals;

// Load once at start-up; the Segmenter owns the model and frees it in dispose().
const segmenter = await Segmenter.load(modelPath, { size: Number(values.size), tta: values.tta, maxBatchSize: 8, maxWaitMs: 5 });

async function segmentFile(file) {
  const bytes = await readFile(file);
  try {
    // Every call gets a deadline: it is dropped from the queue if it has not run by then.
    const r = await segmenter.predict(bytes, { signal: AbortSignal.timeout(Number(values['timeout-ms'])) });
    process.stderr.write(
      `${basename(file)}: ${r.positive ? 'pneumothorax' : 'no pneumothorax'}, area ${r.area} px of ${r.width}x${r.height}, ` +
        `max p ${r.maxProbability.toFixed(3)}, batch of ${r.batchSize}, ${r.timings.totalMs.toFixed(0)} ms\n`,
    );
    return { file, positive: r.positive, area: r.area, maxProbability: r.maxProbability, rle: r.rle, width: r.width, height: r.height, batchSize: r.batchSize, timings: r.timings };
  } catch (err) {
    // SegmenterError codes: BAD_INPUT, INPUT_TOO_LARGE, QUEUE_FULL, ABORTED, DISPOSED.
    if (err instanceof SegmenterError) {
      process.stderr.write(`${basename(file)}: ${err.code}: ${err.message}\n`);
      return { file, error: err.code, message: err.message };
    }
    throw err;
  }
}

try {
  const results = await Promise.all(files.map(segmentFile));
  process.stdout.write(`${JSON.stringify({ model: segmenter.describe(), results, stats: segmenter.stats() })}\n`);
} finally {
  segmenter.dispose();
}
