// Serve bench: `SegmentServer` under a bounded load on loopback. 16 concurrent clients (keep-alive)
// POST SIIM-like 1024 x 1024 JPEG DICOMs to /v1/segment for PNEUMO_SERVE_SECONDS (default 60; 10
// with --quick) after a warm-up, against a tiny UNet (tiny_unet_r18) at PNEUMO_SERVE_SIZE (default
// 128) px; masks come back at 1024 as RLE. The server runs in its own process (bench/serve.worker.mjs)
// so its RSS and event-loop delay are its own.
//
// Reported: failed requests (goal 0), p50/p99 latency, throughput, RSS growth after warm-up (goal
// < 100 MB), event-loop delay p99 under load (goal < 20 ms), and the baselines measured in the
// same run: sequential batch-1 calls (one client, --max-batch 1; goal: micro-batched throughput
// >= 1.5x) and the same 16-client load on a batch-1 server (latency without micro-batching).
import { fork } from 'node:child_process';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dicom, models, synth } from '../dist/index.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const CLIENTS = 16;

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function once(child, predicate = () => true) {
  return new Promise((resolve, reject) => {
    const onMessage = (m) => {
      if (!predicate(m)) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m);
    };
    const onExit = (code) => reject(new Error(`serve worker exited (${code})`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function startServer(options) {
  const child = fork(join(here, 'serve.worker.mjs'), [JSON.stringify(options)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { port } = await once(child, (m) => m.port !== undefined);
  return {
    port,
    reset: async () => (child.send('reset'), (await once(child, (m) => m.rss !== undefined && m.lag === undefined)).rss),
    report: async () => (child.send('report'), once(child, (m) => m.lag !== undefined)),
    stop: async () => {
      child.send('stop');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

function post(agent, port, body) {
  return new Promise((resolve) => {
    const started = performance.now();
    const req = request(
      { host: '127.0.0.1', port, path: '/v1/segment', method: 'POST', agent, headers: { 'Content-Type': 'application/dicom', 'Content-Length': body.length } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          let batchSize = 0;
          if (res.statusCode === 200) batchSize = JSON.parse(Buffer.concat(chunks).toString()).batchSize;
          resolve({ ok: res.statusCode === 200, status: res.statusCode, ms: performance.now() - started, batchSize });
        });
        res.on('error', () => resolve({ ok: false, status: 0, ms: performance.now() - started }));
      },
    );
    req.on('error', () => resolve({ ok: false, status: 0, ms: performance.now() - started }));
    req.end(body);
  });
}

/** `clients` loops posting bodies until `seconds` pass; returns latencies and failures. */
async function load(port, bodies, clients, seconds, onSecond) {
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  const deadline = performance.now() + seconds * 1000;
  const latencies = [];
  const failures = new Map();
  let batchSum = 0;
  let next = 0;
  const ticker = onSecond ? setInterval(onSecond, 1000) : undefined;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < deadline) {
        const r = await post(agent, port, bodies[next++ % bodies.length]);
        if (r.ok) {
          latencies.push(r.ms);
          batchSum += r.batchSize;
        } else failures.set(r.status, (failures.get(r.status) ?? 0) + 1);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  clearInterval(ticker);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const failed = [...failures.values()].reduce((s, n) => s + n, 0);
  return {
    completed: latencies.length,
    failed,
    failures: Object.fromEntries(failures),
    throughput: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    meanBatch: latencies.length ? batchSum / latencies.length : 0,
  };
}

export async function run({ tmpDir, quick, log }) {
  const seconds = Number(process.env.PNEUMO_SERVE_SECONDS ?? (quick ? 10 : 60));
  const baselineSeconds = Math.max(5, Math.round(seconds / 3));
  const warmup = quick ? 3 : 8;
  const size = Number(process.env.PNEUMO_SERVE_SIZE ?? 128);
  const backbone = process.env.PNEUMO_SERVE_MODEL ?? 'tiny_unet_r18';
  const model = await models.Model.create({ backbone, seed: 1 });
  const modelPath = join(tmpDir, 'serve.pt');
  await model.save(modelPath);
  model.dispose();
  const bodies = [];
  for (let index = 0; index < 8; index += 1) {
    const image = synth.generateImage({ seed: 2019, split: 'test', index, positive: index % 3 === 0, size: 1024 });
    bodies.push(await dicom.writeDicom({ pixels: image.pixels, width: 1024, height: 1024 }, { encoding: 'jpeg-baseline', quality: 90 }));
  }
  log(`${backbone} at ${size}px, 1024x1024 JPEG DICOMs (${(bodies[0].length / 1024).toFixed(0)} KB), ${CLIENTS} clients, ${seconds} s (+${warmup} s warm-up)`);

  // Micro-batched server under 16 clients.
  const batched = await startServer({ model: modelPath, size, maxBatchSize: 8, maxWaitMs: 5 });
  await load(batched.port, bodies, CLIENTS, warmup);
  const rssAfterWarmup = await batched.reset();
  let rssMax = rssAfterWarmup;
  const sampling = [];
  const main = await load(batched.port, bodies, CLIENTS, seconds, () => sampling.push(batched.report().then((r) => (rssMax = Math.max(rssMax, r.rss)))));
  await Promise.all(sampling);
  const end = await batched.report();
  await batched.stop();
  const rssGrowthMb = (end.rss - rssAfterWarmup) / 2 ** 20;
  const rssMaxGrowthMb = (rssMax - rssAfterWarmup) / 2 ** 20;
  log(
    `micro-batched: ${main.completed} ok, ${main.failed} failed ${JSON.stringify(main.failures)}, ${main.throughput.toFixed(2)} req/s, p50 ${main.p50.toFixed(0)} ms, ` +
      `p99 ${main.p99.toFixed(0)} ms, mean batch ${main.meanBatch.toFixed(2)}, RSS ${(rssAfterWarmup / 2 ** 20).toFixed(0)} -> ${(end.rss / 2 ** 20).toFixed(0)} MB ` +
      `(max +${rssMaxGrowthMb.toFixed(1)} MB), event-loop delay p50 ${end.lag.p50.toFixed(1)} / p99 ${end.lag.p99.toFixed(1)} / max ${end.lag.max.toFixed(1)} ms`,
  );

  // Baselines: batch-1 server, one sequential client; then the same 16-client load.
  const single = await startServer({ model: modelPath, size, maxBatchSize: 1, maxWaitMs: 0 });
  await load(single.port, bodies, 1, warmup);
  const sequential = await load(single.port, bodies, 1, baselineSeconds);
  const unbatched = await load(single.port, bodies, CLIENTS, baselineSeconds);
  await single.stop();
  log(`sequential batch-1: ${sequential.throughput.toFixed(2)} req/s, p50 ${sequential.p50.toFixed(0)} ms; ${CLIENTS} clients on batch-1: ${unbatched.throughput.toFixed(2)} req/s, p50 ${unbatched.p50.toFixed(0)} ms, p99 ${unbatched.p99.toFixed(0)} ms, ${unbatched.failed} failed`);

  const setting = `${backbone} ${size}px, 1024 JPEG DICOMs -> RLE at 1024, ${CLIENTS} clients, ${seconds} s after ${warmup} s warm-up, max batch 8 / wait 5 ms`;
  const loadBaseline = (value) => ({ name: `${CLIENTS} clients, batch-1 server`, value });
  return [
    { group: 'serve', name: 'throughput, micro-batched', unit: 'req/s', value: main.throughput, baseline: { name: 'sequential batch-1 calls', value: sequential.throughput }, higherIsBetter: true, goal: 1.5, notes: `${setting}; mean batch ${main.meanBatch.toFixed(2)}` },
    { group: 'serve', name: 'throughput, micro-batched vs batch-1 server under the same load', unit: 'req/s', value: main.throughput, baseline: loadBaseline(unbatched.throughput), higherIsBetter: true },
    { group: 'serve', name: 'latency p50', unit: 'ms', value: main.p50, baseline: loadBaseline(unbatched.p50), higherIsBetter: false },
    { group: 'serve', name: 'latency p99', unit: 'ms', value: main.p99, baseline: loadBaseline(unbatched.p99), higherIsBetter: false },
    { group: 'serve', name: 'failed requests', unit: 'requests', value: main.failed, higherIsBetter: false, notes: `goal 0 of ${main.completed + main.failed}${main.failed ? ` (${JSON.stringify(main.failures)})` : ' (met)'}` },
    { group: 'serve', name: 'RSS growth after warm-up', unit: 'MB', value: rssGrowthMb, higherIsBetter: false, notes: `goal < 100 MB${rssMaxGrowthMb < 100 ? ' (met)' : ' (missed)'}; max during the run +${rssMaxGrowthMb.toFixed(1)} MB; RSS ${(end.rss / 2 ** 20).toFixed(0)} MB` },
    { group: 'serve', name: 'event-loop delay p99 under load', unit: 'ms', value: end.lag.p99, higherIsBetter: false, notes: `goal < 20 ms${end.lag.p99 < 20 ? ' (met)' : ' (missed)'}; p50 ${end.lag.p50.toFixed(1)}, max ${end.lag.max.toFixed(1)} ms (server process, perf_hooks.monitorEventLoopDelay)` },
  ];
}
