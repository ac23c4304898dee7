/**
 * The HTTP front of a {@link Segmenter} (node:http only), behind `pneumo-native serve`:
 *
 * - `POST /v1/segment` with a DICOM (`application/dicom`), PNG (`image/png`) or JPEG
 *   (`image/jpeg`) body: JSON (RLE, area, maximum probability, positive, timings), or the mask
 *   as a PNG with `Accept: image/png` or `?format=png`. Query: `tta=1`, `triplet=top,area,bottom`,
 *   `size=N`.
 * - `GET /healthz`: 200 while serving, 503 while draining.
 * - `GET /metrics`: Prometheus text (requests by status, latency histogram, queue depth, batch
 *   sizes, event-loop delay, RSS).
 *
 * Every failure is a JSON `{ error, code }` with a 4xx/5xx status; nothing a client sends takes
 * the server down. Statuses: 400 bad input or query, 404, 405, 408 body not received in time,
 * 413 body or image too large, 415 content type, 503 queue full / processing timeout / draining,
 * 500 anything else (a bug: the message says what failed).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { IntervalHistogram } from 'node:perf_hooks';
import { assertInteger, invalidParameterError } from '../core/validate.js';
import { sniffImageFormat } from '../data/sniff.js';
import type { Triplet } from '../scoring/triplet.js';
import { SegmenterError } from './errors.js';
import { Histogram, LabeledCounter, counter, gauge } from './metrics.js';
import { Segmenter, maskToPng } from './segmenter.js';
import type { SegmentOptions, SegmentResult } from './segmenter.js';

/** Options of {@link SegmentServer}. */
export interface SegmentServerOptions {
  /** Largest request body, bytes (default 32 MiB); larger ones get 413. */
  maxBodyBytes?: number;
  /** Time allowed to receive a request body, ms (default 10 000); then 408. */
  bodyTimeoutMs?: number;
  /** Time allowed from a complete body to the result, queue included, ms (default 30 000); then 503. */
  requestTimeoutMs?: number;
  /** A line logger for lifecycle events (default: none). */
  log?: (line: string) => void;
}

const MEDIA_TYPES: Record<string, 'dicom' | 'png' | 'jpeg'> = {
  'application/dicom': 'dicom',
  'image/png': 'png',
  'image/jpeg': 'jpeg',
  'image/jpg': 'jpeg',
};

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128];

/** An HTTP error with its status and stable code. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function statusOf(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof SegmenterError) {
    switch (err.code) {
      case 'BAD_INPUT':
        return new HttpError(400, err.code, err.message);
      case 'INPUT_TOO_LARGE':
      case 'OVER_MEMORY_BUDGET':
        return new HttpError(413, err.code, err.message);
      case 'SIZE_TOO_LARGE':
        return new HttpError(400, err.code, err.message);
      case 'QUEUE_FULL':
        return new HttpError(503, err.code, err.message, { 'Retry-After': '1' });
      case 'DISPOSED':
        return new HttpError(503, 'SHUTTING_DOWN', 'The server is shutting down');
      case 'ABORTED':
        return new HttpError(503, 'ABORTED', err.message);
    }
  }
  if (err instanceof TypeError || err instanceof RangeError) return new HttpError(400, 'BAD_REQUEST', err.message);
  return new HttpError(500, 'INTERNAL', `Segmentation failed: ${(err as Error)?.message ?? String(err)}`);
}

function parseBool(name: string, value: string): boolean {
  if (['1', 'true', 'yes'].includes(value)) return true;
  if (['0', 'false', 'no'].includes(value)) return false;
  throw new HttpError(400, 'BAD_QUERY', `Expected 1/0/true/false for ${name} but received ${JSON.stringify(value)}`);
}

/** Segment options from the query string. */
function queryOptions(params: URLSearchParams): { options: SegmentOptions; png: boolean | undefined } {
  const options: SegmentOptions = {};
  const known = new Set(['tta', 'triplet', 'size', 'format']);
  for (const key of params.keys()) if (!known.has(key)) throw new HttpError(400, 'BAD_QUERY', `Unknown query parameter ${JSON.stringify(key)} (known: ${[...known].join(', ')})`);
  const tta = params.get('tta');
  if (tta !== null) options.tta = parseBool('tta', tta);
  const triplet = params.get('triplet');
  if (triplet !== null) {
    const parts = triplet.split(',').map((p) => Number(p));
    if (parts.length !== 3 || parts.some((p) => !Number.isFinite(p))) {
      throw new HttpError(400, 'BAD_QUERY', `Expected triplet=top,area,bottom (three numbers) but received ${JSON.stringify(triplet)}`);
    }
    options.triplet = parts as Triplet;
  }
  const size = params.get('size');
  if (size !== null) {
    if (!/^\d{1,5}$/.test(size)) throw new HttpError(400, 'BAD_QUERY', `Expected an integer for size but received ${JSON.stringify(size)}`);
    options.size = Number(size);
  }
  const format = params.get('format');
  if (format !== null && format !== 'png' && format !== 'json') throw new HttpError(400, 'BAD_QUERY', `Expected format=json or format=png but received ${JSON.stringify(format)}`);
  return { options, png: format === null ? undefined : format === 'png' };
}

function wantsPng(req: IncomingMessage, format: boolean | undefined): boolean {
  if (format !== undefined) return format;
  const accept = req.headers.accept ?? '';
  return /(^|,)\s*image\/png\s*(;|,|$)/i.test(accept) && !/(^|,)\s*application\/json\s*(;|,|$)/i.test(accept);
}

/** The JSON body of a segmentation (the mask itself only as RLE). */
export function resultJson(r: SegmentResult): Record<string, unknown> {
  return {
    rle: r.rle,
    area: r.area,
    positive: r.positive,
    maxProbability: r.maxProbability,
    width: r.width,
    height: r.height,
    size: r.size,
    tta: r.tta,
    triplet: r.triplet,
    batchSize: r.batchSize,
    input: r.input,
    timings: r.timings,
  };
}

/** An HTTP server around one segmenter; see the module comment for the routes. */
export class SegmentServer {
  /** The segmenter behind /v1/segment; `drain()` closes it. */
  readonly segmenter: Segmenter;
  /** The node:http server (for embedding in an existing process: its events, its address). */
  readonly server: Server;
  readonly #maxBodyBytes: number;
  readonly #bodyTimeoutMs: number;
  readonly #requestTimeoutMs: number;
  readonly #log: (line: string) => void;
  readonly #requests = new LabeledCounter('pneumo_http_requests_total', 'HTTP requests by route and status code.');
  readonly #latency = new Histogram('pneumo_segment_duration_seconds', 'Latency of POST /v1/segment from the request to the response, seconds.', LATENCY_BUCKETS);
  readonly #loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  readonly #started = Date.now();
  #inFlight = 0;
  #draining = false;
  #drained: (() => void)[] = [];

  /** Wraps `segmenter` (which the server then owns: `drain()` closes it); call `listen()` to start. */
  constructor(segmenter: Segmenter, options: SegmentServerOptions = {}) {
    if (!(segmenter instanceof Segmenter)) throw invalidParameterError('segmenter', 'a Segmenter', segmenter);
    this.segmenter = segmenter;
    this.#maxBodyBytes = options.maxBodyBytes ?? 32 * 1024 * 1024;
    this.#bodyTimeoutMs = options.bodyTimeoutMs ?? 10_000;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    assertInteger('options.maxBodyBytes', this.#maxBodyBytes, 1, 2 ** 31 - 1);
    assertInteger('options.bodyTimeoutMs', this.#bodyTimeoutMs, 1, 3_600_000);
    assertInteger('options.requestTimeoutMs', this.#requestTimeoutMs, 1, 3_600_000);
    if (options.log !== undefined && typeof options.log !== 'function') throw invalidParameterError('options.log', 'a function', options.log);
    this.#log = options.log ?? (() => {});
    this.server = createServer({ requestTimeout: this.#bodyTimeoutMs + 5_000, keepAliveTimeout: 5_000 }, (req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        // A last resort: #handle answers every error itself.
        this.#log(`pneumo-native serve: unexpected error: ${(err as Error)?.stack ?? String(err)}`);
        if (!res.headersSent) this.#send(res, '/other', new HttpError(500, 'INTERNAL', 'Internal error'));
        else res.destroy();
      });
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (!socket.writable || err.code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      this.#requests.inc({ route: 'other', status: String(status) });
      socket.end(`HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
    this.server.on('error', (err) => this.#log(`pneumo-native serve: server error: ${err.message}`));
    this.#loopDelay.enable();
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(port: number, host = '127.0.0.1'): Promise<AddressInfo> {
    assertInteger('port', port, 0, 65535);
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Requests being handled now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Graceful shutdown: stops accepting connections, answers new requests on open connections
   * with 503, lets the requests in flight finish (up to `timeoutMs`, default 30 s), then closes
   * every connection and the segmenter.
   */
  async drain(timeoutMs = 30_000): Promise<void> {
    if (!this.#draining) {
      this.#draining = true;
      this.server.close();
      this.server.closeIdleConnections();
    }
    if (this.#inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#drained.push(resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
      ]);
      clearTimeout(timer);
    }
    this.server.closeAllConnections();
    this.#loopDelay.disable();
    await this.segmenter.close();
  }

  /** The Prometheus text of /metrics. */
  metricsText(): string {
    const stats = this.segmenter.stats();
    const batches = new Histogram('pneumo_batch_size', 'Calls per forward pass (micro-batching).', BATCH_BUCKETS);
    stats.batchSizes.forEach((count, size) => count > 0 && batches.observe(size, count));
    const delay = this.#loopDelay;
    return [
      this.#requests.render(),
      this.#latency.render(),
      gauge('pneumo_http_in_flight', 'Requests being handled.', [[{}, this.#inFlight]]),
      gauge('pneumo_queue_depth', 'Segmentation calls accepted and waiting for a forward pass.', [[{}, stats.queued]]),
      gauge('pneumo_batch_running', 'Calls in the forward pass running now.', [[{}, stats.running]]),
      batches.render(),
      counter('pneumo_segment_calls_total', 'Segmentation calls accepted and finished, by outcome.', [
        [{ outcome: 'completed' }, stats.completed],
        [{ outcome: 'failed' }, stats.failed],
      ]),
      gauge('pneumo_event_loop_delay_seconds', 'Event-loop delay since start (perf_hooks), by quantile.', [
        [{ quantile: '0.5' }, delay.percentile(50) / 1e9],
        [{ quantile: '0.99' }, delay.percentile(99) / 1e9],
        [{ quantile: '1' }, delay.max / 1e9],
      ]),
      gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', [[{}, process.memoryUsage.rss()]]),
      gauge('process_uptime_seconds', 'Seconds since the server started.', [[{}, (Date.now() - this.#started) / 1000]]),
      '',
    ].join('\n');
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.#inFlight += 1;
    const started = performance.now();
    let route = 'other';
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname === '/v1/segment') {
        route = '/v1/segment';
        if (req.method !== 'POST') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `Use POST for /v1/segment (received ${req.method})`, { Allow: 'POST' });
        if (this.#draining) throw new HttpError(503, 'SHUTTING_DOWN', 'The server is shutting down');
        await this.#segment(req, res, url);
      } else if (url.pathname === '/healthz') {
        route = '/healthz';
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `Use GET for /healthz (received ${req.method})`, { Allow: 'GET, HEAD' });
        const stats = this.segmenter.stats();
        const body = {
          status: this.#draining ? 'draining' : 'ok',
          model: this.segmenter.describe(),
          size: this.segmenter.options.size,
          tta: this.segmenter.options.tta,
          queued: stats.queued,
          inFlight: this.#inFlight - 1,
          uptimeSeconds: (Date.now() - this.#started) / 1000,
        };
        this.#sendJson(res, route, this.#draining ? 503 : 200, body);
      } else if (url.pathname === '/metrics') {
        route = '/metrics';
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `Use GET for /metrics (received ${req.method})`, { Allow: 'GET, HEAD' });
        this.#finish(res, route, 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }, this.metricsText());
      } else {
        throw new HttpError(404, 'NOT_FOUND', `No route ${req.method} ${url.pathname} (routes: POST /v1/segment, GET /healthz, GET /metrics)`);
      }
    } catch (err) {
      const httpError = statusOf(err);
      if (res.headersSent) res.destroy();
      else this.#send(res, route, httpError);
    } finally {
      if (route === '/v1/segment') this.#latency.observe((performance.now() - started) / 1000);
      this.#inFlight -= 1;
      if (this.#inFlight === 0 && this.#draining) {
        const waiters = this.#drained;
        this.#drained = [];
        for (const w of waiters) w();
      }
    }
  }

  async #segment(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const { options, png: format } = queryOptions(url.searchParams);
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const declared = MEDIA_TYPES[contentType];
    if (declared === undefined) {
      res.setHeader('Connection', 'close');
      throw new HttpError(
        415,
        'UNSUPPORTED_MEDIA_TYPE',
        `Expected Content-Type application/dicom, image/png or image/jpeg but received ${contentType === '' ? 'none' : JSON.stringify(contentType)}`,
      );
    }
    const body = await this.#readBody(req, res);
    const sniffed = sniffImageFormat(body);
    if (sniffed !== undefined && sniffed !== declared) {
      throw new HttpError(400, 'BAD_INPUT', `The body is a ${sniffed.toUpperCase()} file but Content-Type says ${contentType}`);
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new HttpError(503, 'TIMEOUT', `The segmentation did not finish within ${this.#requestTimeoutMs} ms`)), this.#requestTimeoutMs);
    const onClose = (): void => {
      if (!res.writableFinished) controller.abort(new HttpError(499, 'CLIENT_CLOSED', 'The client closed the connection'));
    };
    res.on('close', onClose);
    let result: SegmentResult;
    try {
      result = await this.segmenter.predict(body, { ...options, signal: controller.signal });
    } catch (err) {
      if (err instanceof SegmenterError && err.code === 'ABORTED' && err.cause instanceof HttpError) throw err.cause;
      throw err;
    } finally {
      clearTimeout(timer);
      res.off('close', onClose);
    }
    if (wantsPng(req, format)) {
      const png = await maskToPng(result.mask, result.width, result.height);
      this.#finish(
        res,
        '/v1/segment',
        200,
        {
          'Content-Type': 'image/png',
          'X-Pneumo-Positive': String(result.positive),
          'X-Pneumo-Area': String(result.area),
          'X-Pneumo-Max-Probability': String(result.maxProbability),
          'X-Pneumo-Timings': JSON.stringify(result.timings),
        },
        png,
      );
    } else {
      this.#sendJson(res, '/v1/segment', 200, resultJson(result));
    }
  }

  /** Reads the body, refusing more than maxBodyBytes (413) or a body slower than bodyTimeoutMs (408). */
  #readBody(req: IncomingMessage, res: ServerResponse): Promise<Uint8Array> {
    const limit = this.#maxBodyBytes;
    const length = req.headers['content-length'];
    if (length !== undefined && Number(length) > limit) {
      res.setHeader('Connection', 'close');
      return Promise.reject(new HttpError(413, 'BODY_TOO_LARGE', `The body is ${length} bytes; the limit is ${limit} bytes`));
    }
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let received = 0;
      let done = false;
      const fail = (err: HttpError): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        req.off('data', onData);
        res.setHeader('Connection', 'close');
        reject(err);
      };
      const timer = setTimeout(() => fail(new HttpError(408, 'BODY_TIMEOUT', `The body was not received within ${this.#bodyTimeoutMs} ms`)), this.#bodyTimeoutMs);
      const onData = (chunk: Buffer): void => {
        received += chunk.length;
        if (received > limit) fail(new HttpError(413, 'BODY_TOO_LARGE', `The body is over the limit of ${limit} bytes`));
        else chunks.push(chunk);
      };
      req.on('data', onData);
      req.on('end', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (received === 0) reject(new HttpError(400, 'BAD_INPUT', 'The body is empty; send the image as the request body'));
        else resolve(Buffer.concat(chunks, received));
      });
      req.on('error', () => fail(new HttpError(400, 'BAD_REQUEST', 'The request body could not be read')));
    });
  }

  #sendJson(res: ServerResponse, route: string, status: number, body: unknown): void {
    this.#finish(res, route, status, { 'Content-Type': 'application/json; charset=utf-8' }, JSON.stringify(body));
  }

  #send(res: ServerResponse, route: string, err: HttpError): void {
    for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
    // 499 (client gone) has no one to answer; count it and close.
    if (err.status === 499) {
      this.#requests.inc({ route, status: '499' });
      res.destroy();
      return;
    }
    this.#sendJson(res, route, err.status, { error: err.message, code: err.code });
  }

  #finish(res: ServerResponse, route: string, status: number, headers: Record<string, string>, body: string | Buffer): void {
    this.#requests.inc({ route, status: String(status) });
    if (this.#draining) res.setHeader('Connection', 'close');
    res.writeHead(status, { ...headers, 'Content-Length': String(Buffer.byteLength(body)) });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }
}
