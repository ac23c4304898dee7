#!/usr/bin/env node
// pneumo-native from worker_threads: each worker loads its own Segmenter; the main thread sends
// file bytes (transferred, not copied) and gets plain results back.
//
//   node main.mjs MODEL IMAGE... [--workers 2] [--size 512]
//
// What is safe (test/install/layouts.test.ts runs this with two workers):
// - Importing pneumo-native in several threads at once: the addon is context-aware, each thread
//   gets its own instance (its own classes and counters).
// - Tensors, Models and Segmenters belong to the thread that made them. Send bytes and plain
//   objects between threads (postMessage), never those objects.
// - Each worker holds its own copy of the weights. LibTorch compute of every thread runs on the
//   process's one compute thread with its intra-op team, so more workers do not make forwards
//   faster: use workers to keep a busy main thread's JavaScript (decoding, post-processing of
//   many images, your own code) apart, and one Segmenter per thread to batch that thread's calls.
// - A worker disposes its Segmenter before it exits (or its finalizers free it at exit).
// Prints one JSON object on stdout: a result per image, with the worker that produced it.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { workers: { type: 'string', default: '2' }, size: { type: 'string', default: '512' } } });
if (positionals.length < 2) {
  process.stderr.write('usage: node main.mjs MODEL IMAGE... [--workers 2] [--size 512]\n');
  process.exit(2);
}
const [modelPath, ...files] = positionals;
const count = Math.max(1, Number(values.workers));

/** One worker and its pending requests (id -> resolve/reject). */
function startWorker(index) {
  const worker = new Worker(new URL('./segment-worker.mjs', import.meta.url), { workerData: { modelPath, size: Number(values.size), index } });
  const pending = new Map();
  let nextId = 0;
  const ready = new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.on('message', (m) => {
      if (m.type === 'ready') return resolve();
      if (m.type === 'closed') return;
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.type === 'result') p.resolve(m.result);
      else p.reject(new Error(m.message));
    });
  });
  worker.on('error', (err) => {
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  });
  return {
    index,
    ready,
    segment(bytes) {
      const id = nextId++;
      const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ type: 'segment', id, bytes: ab }, [ab]); // transferred: no copy
      });
    },
    close: () => new Promise((resolve) => {
      worker.once('exit', resolve);
      worker.postMessage({ type: 'close' });
    }),
  };
}

const workers = Array.from({ length: count }, (_, i) => startWorker(i));
await Promise.all(workers.map((w) => w.ready));
try {
  const results = await Promise.all(
    files.map(async (file, i) => {
      const w = workers[i % workers.length];
      const r = await w.segment(await readFile(file));
      process.stderr.write(`${basename(file)}: worker ${w.index}, ${r.positive ? 'pneumothorax' : 'no pneumothorax'}, area ${r.area}\n`);
      return { file, worker: w.index, ...r };
    }),
  );
  process.stdout.write(`${JSON.stringify({ workers: count, results })}\n`);
} finally {
  await Promise.all(workers.map((w) => w.close()));
}
