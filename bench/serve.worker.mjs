// The server side of the serve bench: one SegmentServer (src/serve/server.ts) in its own process,
// so that its RSS and event-loop delay are measured apart from the load generator. Talks to the
// bench over IPC: { port } when listening; 'reset' (after warm-up) -> { rss }; 'report' ->
// { rss, lag: { p50, p99, max } (ms) }; 'stop' -> drains and exits.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Segmenter, SegmentServer } from '../dist/index.js';

const options = JSON.parse(process.argv[2]);
const segmenter = await Segmenter.load(options.model, {
  size: options.size,
  maxBatchSize: options.maxBatchSize,
  maxWaitMs: options.maxWaitMs,
  maxQueue: 256,
});
const server = new SegmentServer(segmenter, { requestTimeoutMs: 120_000 });
const { port } = await server.listen(0);
const lag = monitorEventLoopDelay({ resolution: 5 });
lag.enable();
process.on('message', (message) => {
  if (message === 'reset') {
    lag.reset();
    process.send({ rss: process.memoryUsage.rss() });
  } else if (message === 'report') {
    process.send({ rss: process.memoryUsage.rss(), lag: { p50: lag.percentile(50) / 1e6, p99: lag.percentile(99) / 1e6, max: lag.max / 1e6 } });
  } else if (message === 'stop') {
    server.drain(10_000).then(() => process.exit(0));
  }
});
process.send({ port });
