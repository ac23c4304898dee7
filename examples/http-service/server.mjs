#!/usr/bin/env node
// A small segmentation service on node:http that embeds pneumo-native (no framework):
//
//   npm install            # in this folder: pneumo-native from ../.. (a link to this repository, whose
//                          # `npm run build` builds the addon); in your service, a registry version or tarball
//   node server.mjs MODEL [--port 8080] [--host 127.0.0.1] [--size 512] [--tta]
//
// MODEL is a checkpoint or TorchScript export (`Model.save`, `pneumo-native train`).
//   POST /segment   body: a DICOM, PNG or JPEG file -> { positive, area, maxProbability, rle, width, height, ms }
//   GET  /health    200 "ok" (503 while shutting down)
// One Segmenter is shared by every request: requests that arrive together share one forward pass
// (micro-batching), and all LibTorch work runs off the event loop. On SIGTERM/SIGINT it stops
// accepting, finishes the requests it accepted, frees the model and exits 0. Prints one JSON line
// ({ url }) on stdout once listening (--port 0 picks a free port).
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Segmenter, SegmenterError } from 'pneumo-native';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: 'string', default: '8080' },
    host: { type: 'string', default: '127.0.0.1' },
    size: { type: 'string', default: '512' },
    tta: { type: 'boolean', default: false },
  },
});
if (positionals.length !== 1) {
  process.stderr.write('usage: node server.mjs MODEL [--port 8080] [--host 127.0.0.1] [--size 512] [--tta]\n');
  process.exit(2);
}

const MAX_BODY = 32 * 2 ** 20;
// Loaded once; the Segmenter owns the model from here on.
const segmenter = await Segmenter.load(positionals[0], { size: Number(values.size), tta: values.tta, maxBatchSize: 8, maxWaitMs: 5, maxQueue: 64 });
let closing = false;

/** SegmenterError codes to HTTP statuses. */
const STATUS = { BAD_INPUT: 400, INPUT_TOO_LARGE: 413, QUEUE_FULL: 503, ABORTED: 503, DISPOSED: 503 };

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req) {
  const chunks = [];
  let length = 0;
  for await (const chunk of req) {
    length += chunk.length;
    if (length > MAX_BODY) throw Object.assign(new Error(`body over ${MAX_BODY} bytes`), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const server = http.createServer(async (req, res) => {
  const started = performance.now();
  try {
    if (req.method === 'GET' && req.url === '/health') return send(res, closing ? 503 : 200, { status: closing ? 'closing' : 'ok' });
    if (req.url !== '/segment') return send(res, 404, { error: `no route ${req.url}` });
    if (req.method !== 'POST') return send(res, 405, { error: 'POST a DICOM, PNG or JPEG file to /segment' });
    const body = await readBody(req);
    // A deadline per request: a call still queued after 10 s is dropped (SegmenterError ABORTED).
    const r = await segmenter.predict(body, { signal: AbortSignal.timeout(10_000) });
    send(res, 200, { positive: r.positive, area: r.area, maxProbability: r.maxProbability, rle: r.rle, width: r.width, height: r.height, batchSize: r.batchSize, ms: performance.now() - started });
  } catch (err) {
    if (err instanceof SegmenterError) return send(res, STATUS[err.code] ?? 500, { error: err.message, code: err.code });
    send(res, err.status ?? 500, { error: err.message });
  }
});

async function shutdown() {
  if (closing) return;
  closing = true;
  server.close(); // stop accepting; requests in flight go on
  await segmenter.close(); // finishes accepted calls, then frees the model
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.listen(Number(values.port), values.host, () => {
  const { port } = server.address();
  process.stdout.write(`${JSON.stringify({ url: `http://${values.host}:${port}` })}\n`);
});
