/**
 * Pretrained-weights downloads through a loopback HTTP server standing in for a mirror
 * (PNEUMO_WEIGHTS_MIRROR): progress, the cache hit, checksum mismatches (nothing kept), a
 * connection dropped mid-file (no partial file in use, the next call resumes), 404s, redirects,
 * files copied into the cache by hand (no network), and `imagenet` resolved through the registry.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../../src/models/model.js';
import { ChecksumMismatchError, fetchPretrained, fetchWeightsFile, listPretrained, verifyPretrained, weightsCacheDir } from '../../src/models/weights.js';
import type { WeightsProgress } from '../../src/models/weights.js';
import type { PretrainedEntry } from '../../src/models/registry.js';

const root = mkdtempSync(join(tmpdir(), 'pn-weights-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const payload = randomBytes(3 * 1024 * 1024 + 17);
const sha256 = createHash('sha256').update(payload).digest('hex');

interface Seen {
  url: string;
  range: string | undefined;
}
/** What the server does per path: serve bytes (honouring Range), drop mid-file once, 404, redirect. */
const routes = new Map<string, (req: IncomingMessage, res: ServerResponse) => void>();
const seen: Seen[] = [];
let server: Server;
let base: string;

function serveBytes(bytes: Buffer, options: { dropAfter?: number } = {}) {
  let dropped = false;
  return (req: IncomingMessage, res: ServerResponse): void => {
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    if (start >= bytes.length && range) {
      res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` }).end();
      return;
    }
    const body = bytes.subarray(start);
    res.writeHead(range ? 206 : 200, {
      'Content-Length': body.length,
      ...(range ? { 'Content-Range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` } : {}),
    });
    if (options.dropAfter !== undefined && !dropped) {
      dropped = true;
      res.write(body.subarray(0, options.dropAfter), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    res.end(body);
  };
}

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', range: req.headers.range });
    const route = routes.get(req.url ?? '');
    if (route) route(req, res);
    else res.writeHead(404, { 'Content-Type': 'text/plain' }).end('no such file');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
afterEach(() => {
  routes.clear();
  seen.length = 0;
});

function entry(file: string, checksum: Partial<PretrainedEntry> = { sha256 }): PretrainedEntry {
  return { url: `https://upstream.invalid/models/${file}`, file, from: 'test', ...checksum };
}

function freshCache(): string {
  return mkdtempSync(join(root, 'cache-'));
}

describe('weights downloads (loopback mirror)', () => {
  it('downloads from the mirror with progress, then hits the cache without a request', async () => {
    routes.set('/w/a.pth', serveBytes(payload));
    const cacheDir = freshCache();
    const progress: WeightsProgress[] = [];
    const first = await fetchWeightsFile(entry('a.pth'), { cacheDir, mirror: `${base}/w/`, onProgress: (p) => progress.push({ ...p }) });
    expect(first.downloaded).toBe(true);
    expect(first.url).toBe(`${base}/w/a.pth`);
    expect(first.sha256).toBe(sha256);
    expect(readFileSync(first.path).equals(payload)).toBe(true);
    expect(progress.length).toBeGreaterThan(2);
    expect(progress.at(-1)).toMatchObject({ file: 'a.pth', received: payload.length, total: payload.length, done: true, resumedFrom: 0 });
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.received).toBeGreaterThanOrEqual(progress[i - 1]!.received);
    expect(seen).toHaveLength(1);

    const again: WeightsProgress[] = [];
    const second = await fetchWeightsFile(entry('a.pth'), { cacheDir, mirror: `${base}/w`, onProgress: (p) => again.push(p) });
    expect(second).toMatchObject({ downloaded: false, path: first.path, sha256, url: null });
    expect(again).toEqual([]);
    expect(seen).toHaveLength(1);
    expect(readdirSync(cacheDir).sort()).toEqual(['a.pth', 'a.pth.verified.json']);
  });

  it('verifies an 8-hex sha256 prefix as recorded for upstream files', async () => {
    routes.set('/b.pth', serveBytes(payload));
    const cacheDir = freshCache();
    const got = await fetchWeightsFile(entry('b.pth', { sha256Prefix: sha256.slice(0, 8) }), { cacheDir, mirror: base, onProgress: false });
    expect(got.sha256).toBe(sha256);
  });

  it('rejects a checksum mismatch naming file, expected and actual, and keeps nothing in the cache', async () => {
    const other = Buffer.from(payload);
    other[1000] ^= 0xff;
    const actual = createHash('sha256').update(other).digest('hex');
    routes.set('/c.pth', serveBytes(other));
    const cacheDir = freshCache();
    const err = await fetchWeightsFile(entry('c.pth'), { cacheDir, mirror: base, onProgress: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    expect((err as Error).message).toContain('c.pth');
    expect((err as Error).message).toContain(sha256);
    expect((err as Error).message).toContain(actual);
    expect(readdirSync(cacheDir)).toEqual([]);
  });

  it('a connection dropped mid-file leaves no file in use; the next call resumes with a Range request', async () => {
    const half = 1024 * 1024 + 5;
    routes.set('/d.pth', serveBytes(payload, { dropAfter: half }));
    const cacheDir = freshCache();
    const err = (await fetchWeightsFile(entry('d.pth'), { cacheDir, mirror: base, onProgress: false }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/Cannot fetch d\.pth .*closed.*bytes are kept in .*d\.pth\.part.*resumes/s);
    expect(existsSync(join(cacheDir, 'd.pth'))).toBe(false);
    expect(existsSync(join(cacheDir, 'd.pth.part'))).toBe(true);
    const kept = readFileSync(join(cacheDir, 'd.pth.part')).length; // what reached us before the drop
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(half);
    expect(payload.subarray(0, kept).equals(readFileSync(join(cacheDir, 'd.pth.part')))).toBe(true);

    const progress: WeightsProgress[] = [];
    const got = await fetchWeightsFile(entry('d.pth'), { cacheDir, mirror: base, onProgress: (p) => progress.push(p) });
    expect(got.downloaded).toBe(true);
    expect(seen.at(-1)!.range).toBe(`bytes=${kept}-`);
    expect(progress[0]!.resumedFrom).toBe(kept);
    expect(readFileSync(got.path).equals(payload)).toBe(true);
    expect(existsSync(join(cacheDir, 'd.pth.part'))).toBe(false);
  });

  it('a 404 is a clear error naming the file, the address and what to do offline', async () => {
    const cacheDir = freshCache();
    await expect(fetchWeightsFile(entry('missing.pth'), { cacheDir, mirror: base, onProgress: false })).rejects.toThrow(
      /Cannot fetch missing\.pth .* from http:\/\/127\.0\.0\.1:\d+\/missing\.pth: HTTP 404 Not Found.*copy missing\.pth into .*PNEUMO_WEIGHTS_MIRROR/s,
    );
    expect(readdirSync(cacheDir)).toEqual([]);
  });

  it('follows redirects (upstream hosts redirect to their CDNs)', async () => {
    routes.set('/e.pth', (_req, res) => res.writeHead(302, { Location: '/cdn/e.pth?sig=1' }).end());
    routes.set('/cdn/e.pth?sig=1', serveBytes(payload));
    const got = await fetchWeightsFile(entry('e.pth'), { cacheDir: freshCache(), mirror: base, onProgress: false });
    expect(got.sha256).toBe(sha256);
    expect(seen.map((s) => s.url)).toEqual(['/e.pth', '/cdn/e.pth?sig=1']);
  });

  it('concurrent calls share one download', async () => {
    routes.set('/f.pth', serveBytes(payload));
    const cacheDir = freshCache();
    const [a, b] = await Promise.all([0, 1].map(() => fetchWeightsFile(entry('f.pth'), { cacheDir, mirror: base, onProgress: false })));
    expect(a!.path).toBe(b!.path);
    expect(seen).toHaveLength(1);
  });

  it('a file copied into the cache by hand is verified and used without any network; a corrupted one is fetched again', async () => {
    const cacheDir = freshCache();
    writeFileSync(join(cacheDir, 'g.pth'), payload);
    const got = await fetchWeightsFile(entry('g.pth'), { cacheDir, mirror: 'http://127.0.0.1:9/unreachable', onProgress: false });
    expect(got).toMatchObject({ downloaded: false, sha256 });
    expect(seen).toHaveLength(0);

    writeFileSync(join(cacheDir, 'g.pth'), Buffer.concat([payload, Buffer.from('x')]));
    routes.set('/g.pth', serveBytes(payload));
    const again = await fetchWeightsFile(entry('g.pth'), { cacheDir, mirror: base, onProgress: false });
    expect(again.downloaded).toBe(true);
    expect(readFileSync(again.path).equals(payload)).toBe(true);
  });

  it('a local folder works as a mirror', async () => {
    const mirror = mkdtempSync(join(root, 'mirror-'));
    writeFileSync(join(mirror, 'h.pth'), payload);
    const got = await fetchWeightsFile(entry('h.pth'), { cacheDir: freshCache(), mirror, onProgress: false });
    expect(got).toMatchObject({ downloaded: true, sha256 });
  });

  it('imagenet resolves through the registry: the upstream file name on the mirror, its recorded checksum', async () => {
    const cacheDir = freshCache();
    const previous = { cache: process.env.PNEUMO_CACHE_DIR, mirror: process.env.PNEUMO_WEIGHTS_MIRROR };
    process.env.PNEUMO_CACHE_DIR = cacheDir;
    process.env.PNEUMO_WEIGHTS_MIRROR = base;
    try {
      expect(weightsCacheDir()).toBe(join(cacheDir, 'weights'));
      // Not torchvision's file: the sha256 prefix in its name (f37072fd) cannot match.
      routes.set('/resnet18-f37072fd.pth', serveBytes(payload));
      const err = (await Model.create({ backbone: 'unet_r18', encoderWeights: 'imagenet', weightsFetch: { onProgress: false } }).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(ChecksumMismatchError);
      expect(err!.message).toMatch(new RegExp(`resnet18-f37072fd\\.pth.*starting with f37072fd.*${sha256}`));
      expect(readdirSync(join(cacheDir, 'weights'))).toEqual([]);
      routes.clear();
      await expect(fetchPretrained('efficientnet-b4', 'imagenet', { onProgress: false })).rejects.toThrow(/efficientnet-b4-6ed6700e\.pth .*HTTP 404/);
      await expect(fetchPretrained('resnet18', 'noisy-student')).rejects.toThrow(/Expected an encoder with noisy-student weights/);

      const rows = await listPretrained(['resnet34', 'se_resnext50_32x4d']);
      expect(rows.map((r) => [r.encoder, r.file, r.checksum, r.cached])).toEqual([
        ['resnet34', 'resnet34-b627a593.pth', 'sha256-prefix:b627a593', false],
        ['se_resnext50_32x4d', 'se_resnext50_32x4d-a260b3a4.pth', 'sha256-prefix:a260b3a4', false],
      ]);
      expect(rows[1]!.url).toBe('http://data.lip6.fr/cadene/pretrainedmodels/se_resnext50_32x4d-a260b3a4.pth');
      writeFileSync(join(cacheDir, 'weights', 'resnet34-b627a593.pth'), payload);
      expect(await verifyPretrained('resnet34')).toMatchObject({ status: 'mismatch', sha256, expected: 'b627a593' });
      expect(await verifyPretrained('resnet50')).toMatchObject({ status: 'missing' });
    } finally {
      for (const [k, v] of [['PNEUMO_CACHE_DIR', previous.cache], ['PNEUMO_WEIGHTS_MIRROR', previous.mirror]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
