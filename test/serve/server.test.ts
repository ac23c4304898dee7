/**
 * `SegmentServer`: JSON and PNG answers, /healthz, /metrics, and fuzzed or hostile requests
 * (random bytes, truncated DICOMs, absurd dimensions, wrong content types, oversize and slow
 * bodies) that all get a 4xx with the reason while the server keeps answering.
 */
import { connect } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode as decodeRle } from '../../src/data/rle.js';
import { Segmenter } from '../../src/serve/segmenter.js';
import { SegmentServer } from '../../src/serve/server.js';
import { IMAGE, SIZE, chestFiles, randomBytes, tinyModel, withDimensions } from './fixtures.js';
import type { ChestFiles } from './fixtures.js';
import { send, sendPartial } from './http.js';

let files: ChestFiles;
let server: SegmentServer;
let base: string;
let port: number;

beforeAll(async () => {
  files = await chestFiles(2);
  const segmenter = Segmenter.fromModel(await tinyModel(), { size: SIZE, maxSize: 2 * SIZE, maxWaitMs: 30, maxBatchSize: 8 });
  server = new SegmentServer(segmenter, { maxBodyBytes: 256 * 1024, bodyTimeoutMs: 400, requestTimeoutMs: 20_000 });
  port = (await server.listen(0)).port;
  base = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  await server.drain(5_000);
});

const segment = (body: Uint8Array, contentType: string, query = '', headers: Record<string, string> = {}) =>
  send(`${base}/v1/segment${query}`, { body, headers: { 'Content-Type': contentType, ...headers } });

async function expectHealthy(): Promise<void> {
  const health = await send(`${base}/healthz`);
  expect(health.status).toBe(200);
  const ok = await segment(files.png, 'image/png');
  expect(ok.status).toBe(200);
}

describe('SegmentServer: answers', () => {
  it('segments a DICOM, a PNG and a JPEG into JSON with the RLE, area, probability and timings', async () => {
    for (const [body, type] of [
      [files.dicomJpeg, 'application/dicom'],
      [files.png, 'image/png'],
      [files.jpeg, 'image/jpeg'],
    ] as const) {
      const reply = await segment(body, type, '?triplet=0,0,0.5');
      expect(reply.status, reply.body.toString()).toBe(200);
      expect(reply.headers['content-type']).toMatch(/^application\/json/);
      const r = reply.json();
      expect(r).toMatchObject({ width: IMAGE, height: IMAGE, size: SIZE, tta: false, triplet: [0, 0, 0.5], positive: true });
      const mask = decodeRle(r.rle as string, IMAGE, IMAGE);
      expect(mask.reduce((s, v) => s + v, 0)).toBe(r.area);
      expect(r.maxProbability).toBeGreaterThan(0.5);
      expect(Object.keys(r.timings as object).sort()).toEqual(['decodeMs', 'inferenceMs', 'postprocessMs', 'queueMs', 'totalMs']);
    }
  });

  it('returns the mask as a PNG with Accept: image/png or ?format=png', async () => {
    const json = (await segment(files.png, 'image/png', '?triplet=0,0,0.5')).json();
    for (const [query, headers] of [
      ['?format=png&triplet=0,0,0.5', {}],
      ['?triplet=0,0,0.5', { Accept: 'image/png' }],
    ] as const) {
      const reply = await segment(files.png, 'image/png', query, headers);
      expect(reply.status).toBe(200);
      expect(reply.headers['content-type']).toBe('image/png');
      expect(reply.headers['x-pneumo-area']).toBe(String(json.area));
      expect((await sharp(reply.body).metadata()).channels).toBe(1); // a gray PNG
      const { data, info } = await sharp(reply.body).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height, info.channels]).toEqual([IMAGE, IMAGE, 1]);
      const mask = decodeRle(json.rle as string, IMAGE, IMAGE);
      expect(data.every((v, i) => v === mask[i]! * 255)).toBe(true);
    }
  });

  it('takes tta and size from the query', async () => {
    const r = (await segment(files.png, 'image/png', `?tta=1&size=${2 * SIZE}`)).json();
    expect(r.tta).toBe(true);
    expect(r.size).toBe(2 * SIZE);
  });

  it('reports health and Prometheus metrics', async () => {
    const health = await send(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(health.json()).toMatchObject({ status: 'ok', size: SIZE });
    const metrics = await send(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = metrics.body.toString();
    expect(text).toMatch(/^pneumo_http_requests_total\{route="\/v1\/segment",status="200"\} \d+$/m);
    expect(text).toMatch(/^# TYPE pneumo_segment_duration_seconds histogram$/m);
    expect(text).toMatch(/^pneumo_segment_duration_seconds_bucket\{le="\+Inf"\} \d+$/m);
    expect(text).toMatch(/^pneumo_queue_depth 0$/m);
    expect(text).toMatch(/^pneumo_batch_size_count \d+$/m);
    expect(text).toMatch(/^pneumo_event_loop_delay_seconds\{quantile="0.99"\} [\d.e-]+$/m);
  });

  it('micro-batches concurrent requests (the batch-size metric sees batches > 1)', async () => {
    const bucket = (text: string, le: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`pneumo_batch_size_bucket{le="${le}"} `));
      return Number(line?.split(' ')[1]);
    };
    const before = (await send(`${base}/metrics`)).body.toString();
    const replies = await Promise.all(Array.from({ length: 8 }, () => segment(files.dicomJpeg, 'application/dicom')));
    expect(replies.map((r) => r.status)).toEqual(new Array(8).fill(200));
    expect(Math.max(...replies.map((r) => r.json().batchSize as number))).toBeGreaterThan(1);
    const after = (await send(`${base}/metrics`)).body.toString();
    const batchesOfMore = (text: string) => bucket(text, '+Inf') - bucket(text, '1');
    expect(batchesOfMore(after)).toBeGreaterThan(batchesOfMore(before));
  });
});

describe('SegmentServer: bad requests get a 4xx with the reason, and the server keeps answering', () => {
  it('random bytes under every content type: 400', async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const body = randomBytes(1 + ((seed * 7919) % 50_000), seed);
      for (const type of ['application/dicom', 'image/png', 'image/jpeg']) {
        const reply = await segment(body, type);
        expect(reply.status, `${type} seed ${seed}: ${reply.body.toString()}`).toBe(400);
        expect(reply.json()).toMatchObject({ code: 'BAD_INPUT' });
      }
    }
    // random bytes behind valid magic numbers
    const magic = (prefix: number[], at = 0) => {
      const b = randomBytes(4000, 99);
      b.set(prefix, at);
      return b;
    };
    for (const [body, type] of [
      [magic([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), 'image/png'],
      [magic([0xff, 0xd8, 0xff]), 'image/jpeg'],
      [magic([0x44, 0x49, 0x43, 0x4d], 128), 'application/dicom'],
    ] as const) {
      const reply = await segment(body, type);
      expect(reply.status, reply.body.toString()).toBe(400);
    }
    await expectHealthy();
  });

  it('truncated DICOMs, PNGs and JPEGs: 400', async () => {
    for (const [file, type] of [
      [files.dicomJpeg, 'application/dicom'],
      [files.dicomRaw, 'application/dicom'],
      [files.png, 'image/png'],
      [files.jpeg, 'image/jpeg'],
    ] as const) {
      for (const fraction of [0.02, 0.1, 0.3, 0.5, 0.8, 0.97]) {
        const reply = await segment(file.subarray(0, Math.max(1, Math.floor(file.length * fraction))), type);
        expect(reply.status, `${type} cut at ${fraction}: ${reply.body.toString()}`).toBeGreaterThanOrEqual(400);
        expect(reply.status).toBeLessThan(500);
        expect(String(reply.json().error).length).toBeGreaterThan(10);
      }
    }
    await expectHealthy();
  });

  it('absurd dimensions in a DICOM header: 413 when too large, 400 when inconsistent', async () => {
    const huge = await segment(withDimensions(files.dicomJpeg, 65535, 65535), 'application/dicom');
    expect(huge.status).toBe(413);
    expect(huge.json()).toMatchObject({ code: 'INPUT_TOO_LARGE' });
    // (A native DICOM whose Rows x Columns need fewer bytes than it holds is readable: its extra
    // pixel data is ignored, so only sizes that need more are inconsistent for both encodings.)
    for (const [rows, columns] of [
      [0, 0],
      [1, 65535],
      [IMAGE * 2, IMAGE],
      [4000, 4000],
    ]) {
      for (const file of [files.dicomJpeg, files.dicomRaw]) {
        const reply = await segment(withDimensions(file, rows!, columns!), 'application/dicom');
        expect(reply.status, `${rows}x${columns}: ${reply.body.toString()}`).toBe(400);
        expect(reply.json().error).toMatch(/DICOM/);
      }
    }
    await expectHealthy();
  });

  it('wrong or missing content types: 415; a body that is not what its type says: 400', async () => {
    for (const type of ['text/plain', 'application/json', 'application/octet-stream', 'image/gif', '']) {
      const reply = await segment(files.png, type);
      expect(reply.status, type).toBe(415);
      expect(reply.json().error).toMatch(/Expected Content-Type application\/dicom, image\/png or image\/jpeg/);
    }
    const mismatch = await segment(files.dicomJpeg, 'image/png');
    expect(mismatch.status).toBe(400);
    expect(mismatch.json().error).toMatch(/The body is a DICOM file but Content-Type says image\/png/);
    await expectHealthy();
  });

  it('oversize bodies: 413, with or without Content-Length', async () => {
    const big = randomBytes(600 * 1024, 5);
    const declared = await segment(big, 'application/dicom');
    expect(declared.status).toBe(413);
    expect(declared.json().error).toMatch(/limit is 262144 bytes/);
    const chunked = await send(`${base}/v1/segment`, { body: big, chunked: true, headers: { 'Content-Type': 'application/dicom' } });
    expect(chunked.status).toBe(413);
    await expectHealthy();
  });

  it('a body that stops arriving: 408', async () => {
    const status = await sendPartial(port, '/v1/segment', 'application/dicom', files.dicomJpeg.length, files.dicomJpeg.subarray(0, 1000));
    expect(status).toBe(408);
    await expectHealthy();
  });

  it('clients that disconnect mid-body or while waiting leave nothing in flight', async () => {
    const inFlight = async () => Number(/^pneumo_http_in_flight (\d+)$/m.exec((await send(`${base}/metrics`)).body.toString())![1]) - 1; // minus the scrape
    for (const partial of [files.dicomJpeg.subarray(0, 500), files.dicomJpeg]) {
      await new Promise<void>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.write(`POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/dicom\r\nContent-Length: ${files.dicomJpeg.length}\r\n\r\n`);
          socket.write(partial, () => setTimeout(() => (socket.destroy(), resolve()), 30));
        });
        socket.on('error', reject);
      });
    }
    for (let i = 0; i < 100 && (await inFlight()) > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await inFlight()).toBe(0);
    expect(server.segmenter.stats().queued).toBe(0);
    await expectHealthy();
  });

  it('empty bodies, bad queries, unknown routes and methods', async () => {
    const cases: [string, Parameters<typeof send>[1], number, RegExp][] = [
      ['/v1/segment', { method: 'POST', headers: { 'Content-Type': 'image/png' } }, 400, /body is empty/],
      ['/v1/segment?tta=maybe', { body: files.png, headers: { 'Content-Type': 'image/png' } }, 400, /for tta/],
      ['/v1/segment?triplet=0.5,10', { body: files.png, headers: { 'Content-Type': 'image/png' } }, 400, /triplet=top,area,bottom/],
      ['/v1/segment?triplet=2,10,0.5', { body: files.png, headers: { 'Content-Type': 'image/png' } }, 400, /triplet top/],
      ['/v1/segment?size=33', { body: files.png, headers: { 'Content-Type': 'image/png' } }, 400, /multiple of 32/],
      ['/v1/segment?size=99999999', { body: files.png, headers: { 'Content-Type': 'image/png' } }, 400, /size/],
      ['/v1/segment?format=gif', { body: files.png, headers: { 'Content-Type': 'image/png' } }, 400, /format=json or format=png/],
      ['/v1/segment?colour=red', { body: files.png, headers: { 'Content-Type': 'image/png' } }, 400, /Unknown query parameter "colour"/],
      ['/v1/segment', { method: 'GET' }, 405, /Use POST/],
      ['/metrics', { method: 'DELETE' }, 405, /Use GET/],
      ['/nope', {}, 404, /No route GET \/nope/],
    ];
    for (const [path, options, status, message] of cases) {
      const reply = await send(`${base}${path}`, options);
      expect(reply.status, path).toBe(status);
      expect(reply.json().error).toMatch(message);
    }
    const metrics = (await send(`${base}/metrics`)).body.toString();
    expect(metrics).toMatch(/^pneumo_http_requests_total\{route="\/v1\/segment",status="400"\} \d+$/m);
    expect(metrics).toMatch(/^pneumo_http_requests_total\{route="\/v1\/segment",status="415"\} \d+$/m);
    await expectHealthy();
  });
});

describe('SegmentServer: overload and timeouts', () => {
  it('answers 503 QUEUE_FULL beyond the queue limit and 503 TIMEOUT past the request timeout', async () => {
    const segmenter = Segmenter.fromModel(await tinyModel(), { size: SIZE, maxQueue: 1, maxWaitMs: 1_000 });
    const small = new SegmentServer(segmenter, { requestTimeoutMs: 300 });
    const url = `http://127.0.0.1:${(await small.listen(0)).port}/v1/segment`;
    try {
      const post = () => send(url, { body: files.png, headers: { 'Content-Type': 'image/png' } });
      const first = post(); // waits 1 s for companions: longer than the 300 ms timeout
      await new Promise((r) => setTimeout(r, 150));
      const second = await post();
      expect(second.status).toBe(503);
      expect(second.headers['retry-after']).toBe('1');
      expect(second.json()).toMatchObject({ code: 'QUEUE_FULL' });
      const timedOut = await first;
      expect(timedOut.status).toBe(503);
      expect(timedOut.json()).toMatchObject({ code: 'TIMEOUT' });
      expect(segmenter.stats().queued).toBe(0); // the timed-out call left the queue
    } finally {
      await small.drain(5_000);
    }
  });
});
