/**
 * `pneumo-native weights list|fetch|verify`: the registry's ImageNet files and the cache, through
 * a loopback mirror (PNEUMO_WEIGHTS_MIRROR) and a temporary PNEUMO_CACHE_DIR; `train
 * --encoder-weights` exists.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'pn-weights-cli-'));
const cache = join(root, 'cache');
let server: Server;
let mirror: string;
const served = new Map<string, Buffer>();

beforeAll(async () => {
  server = createServer((req, res) => {
    const body = served.get(req.url ?? '');
    if (!body) res.writeHead(404).end('not here');
    else res.writeHead(200, { 'Content-Length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  mirror = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(root, { recursive: true, force: true });
});

const env = (): NodeJS.ProcessEnv => ({ PNEUMO_CACHE_DIR: cache, PNEUMO_WEIGHTS_MIRROR: mirror });

describe('pneumo-native weights', () => {
  it('lists every encoder with its upstream file, checksum and cache state', async () => {
    const r = await runCli(['weights', 'list', '--json'], { env: env() });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { cacheDir: string; mirror: string; weights: { encoder: string; file: string; checksum: string; cached: boolean; url: string }[] };
    expect(out.cacheDir).toBe(join(cache, 'weights'));
    expect(out.mirror).toBe(mirror);
    expect(out.weights.map((w) => w.file)).toEqual([
      'resnet18-f37072fd.pth',
      'resnet34-b627a593.pth',
      'resnet50-0676ba61.pth',
      'se_resnext50_32x4d-a260b3a4.pth',
      'se_resnext101_32x4d-3b2fe3d8.pth',
      'efficientnet-b3-5fb5a3c3.pth',
      'efficientnet-b4-6ed6700e.pth',
      'efficientnet-b5-b6417697.pth',
    ]);
    for (const w of out.weights) {
      expect(w.checksum).toBe(`sha256-prefix:${w.file.replace(/\.pth$/, '').split('-').at(-1)}`);
      expect(w.url.endsWith(`/${w.file}`)).toBe(true);
      expect(w.cached).toBe(false);
    }
    const table = await runCli(['weights', 'list', 'efficientnet-b4'], { env: env() });
    expect(table.stdout).toMatch(/efficientnet-b4\s+imagenet\s+efficientnet-b4-6ed6700e\.pth\s+not cached\s+sha256-prefix:6ed6700e/);
  });

  it('fetch: a 404 and a checksum mismatch are errors naming the file; progress on stderr; nothing cached', async () => {
    const missing = await runCli(['weights', 'fetch', 'resnet18'], { env: env() });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/Cannot fetch resnet18-f37072fd\.pth .*HTTP 404/);
    served.set('/resnet18-f37072fd.pth', Buffer.alloc(2_000_000, 7));
    const wrong = await runCli(['weights', 'fetch', 'resnet18'], { env: env() });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/resnet18-f37072fd\.pth: 2\.0\/2\.0 MB \(100%\), done/);
    expect(wrong.stderr).toMatch(/Checksum mismatch for resnet18-f37072fd\.pth .*expected SHA-256 starting with f37072fd but the file has [0-9a-f]{64}/);
    const list = JSON.parse((await runCli(['weights', 'list', 'resnet18', '--json'], { env: env() })).stdout) as { weights: { cached: boolean; partialBytes: number | null }[] };
    expect(list.weights[0]).toMatchObject({ cached: false, partialBytes: null });
  });

  it('verify re-hashes cached files and fails on a mismatch; unknown encoders are usage errors', async () => {
    mkdirSync(join(cache, 'weights'), { recursive: true });
    writeFileSync(join(cache, 'weights', 'resnet34-b627a593.pth'), 'not the weights');
    const r = await runCli(['weights', 'verify', 'resnet34', 'resnet50', '--json'], { env: env() });
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { results: { encoder: string; status: string }[] };
    expect(out.results.map((x) => [x.encoder, x.status])).toEqual([
      ['resnet34', 'mismatch'],
      ['resnet50', 'missing'],
    ]);
    expect(r.stderr).toMatch(/Checksum mismatch: .*resnet34-b627a593\.pth \(expected b627a593, found [0-9a-f]{64}\)/);
    const unknown = await runCli(['weights', 'verify', 'resnet101'], { env: env() });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/Unknown encoder "resnet101" \(encoders with imagenet weights: resnet18, resnet34/);
  });

  it('train has --encoder-weights', async () => {
    const r = await runCli(['train', '--help']);
    expect(r.stdout).toMatch(/--encoder-weights\s+Pretrained encoder weights: imagenet/);
  });
});
