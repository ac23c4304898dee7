/**
 * Fault injection, a client trying to make the server eat its memory with `?size=`: refused above
 * `--max-size` (default: the size the model was trained at) and above the per-request memory
 * budget, and the working memory of an allowed large request is given back afterwards (resident
 * size back within RSS_BOUND of its level before the request, as the README states).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../../src/models/model.js';
import { Segmenter } from '../../src/serve/segmenter.js';
import { cliPath, repoRoot } from '../helpers/cli.js';
import { chestFiles } from '../serve/fixtures.js';
import type { ChestFiles } from '../serve/fixtures.js';
import { send } from '../serve/http.js';

/** The bound stated in the README: resident size after a large request, over the level before it. */
const RSS_BOUND = 64 * 1024 * 1024;

const dir = mkdtempSync(join(tmpdir(), 'pn-serve-limits-'));
const trained = join(dir, 'trained64.ckpt');
let files: ChestFiles;

beforeAll(async () => {
  const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 5 });
  await model.save(trained, { metadata: { imgSize: 64 } });
  model.dispose();
  files = await chestFiles(2);
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function startServe(args: string[]): Promise<{ url: string; child: ChildProcess; ready: Record<string, unknown> }> {
  const child = spawn(process.execPath, [cliPath, 'serve', '--model', trained, '--port', '0', '--json', ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const started = Date.now();
  while (!stdout.includes('\n')) {
    if (child.exitCode !== null || Date.now() - started > 120_000) throw new Error(`serve did not start:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const ready = JSON.parse(stdout.split('\n')[0]!) as Record<string, unknown> & { url: string };
  return { url: ready.url, child, ready };
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

async function rss(url: string): Promise<number> {
  const text = (await send(`${url}/metrics`)).body.toString();
  return Number(/^process_resident_memory_bytes (\d+)/m.exec(text)![1]);
}

const segment = (url: string, query = '') => send(`${url}/v1/segment${query}`, { body: files.dicomJpeg, headers: { 'Content-Type': 'application/dicom' } });

describe('serve: the ?size attack', () => {
  it('refuses sizes above the trained size by default (400 SIZE_TOO_LARGE), before any work', async () => {
    const { url, child, ready } = await startServe(['--size', '64']);
    try {
      expect(ready.maxSize).toBe(64);
      const r = await segment(url, '?size=2048&tta=1');
      expect(r.status).toBe(400);
      expect(r.json()).toMatchObject({ code: 'SIZE_TOO_LARGE', error: expect.stringMatching(/size 2048 is above this segmenter's limit of 64/) });
      expect((await segment(url, '?size=8192')).status).toBe(400);
      expect((await segment(url)).status).toBe(200);
      const metrics = (await send(`${url}/metrics`)).body.toString();
      expect(metrics).toMatch(/^pneumo_batch_size_count 1$/m); // the refused ones never reached a forward
    } finally {
      await stop(child);
    }
  }, 180_000);

  it('refuses a request over the per-request memory budget (413 OVER_MEMORY_BUDGET)', async () => {
    const { url, child, ready } = await startServe(['--size', '64', '--max-size', '1024', '--max-request-mb', '64']);
    try {
      expect(ready.maxRequestBytes).toBe(64 * 1024 * 1024);
      const r = await segment(url, '?size=1024&tta=1');
      expect(r.status).toBe(413);
      expect(r.json()).toMatchObject({ code: 'OVER_MEMORY_BUDGET', error: expect.stringMatching(/needs about \d+ MiB of working memory; the budget is 64 MiB/) });
      expect((await segment(url, '?size=128')).status).toBe(200);
    } finally {
      await stop(child);
    }
  }, 180_000);

  it(`gives the working memory of an allowed large request back (RSS within ${RSS_BOUND >> 20} MiB of before)`, async () => {
    const { url, child } = await startServe(['--size', '64', '--max-size', '512', '--timeout-ms', '600000']);
    try {
      for (let i = 0; i < 8; i++) expect((await segment(url)).status).toBe(200);
      const before = await rss(url);
      // 128 x the pixels of a default request, twice over with TTA: about 250 MB of activations.
      const big = await segment(url, '?size=512&tta=1');
      expect(big.status).toBe(200);
      for (let i = 0; i < 4; i++) expect((await segment(url)).status).toBe(200);
      const after = await rss(url);
      expect(after - before, `RSS before ${before >> 20} MiB, after ${after >> 20} MiB`).toBeLessThan(RSS_BOUND);
    } finally {
      await stop(child);
    }
  }, 300_000);
});

describe('Segmenter limits', () => {
  it('measures the model\'s working memory, and refuses calls over maxSize or the budget', async () => {
    const seg = await Segmenter.load(trained, { size: 64, maxSize: 512, maxRequestBytes: 32 << 20 });
    try {
      expect(seg.memoryCalibrated).toBe(true);
      expect(seg.options.maxSize).toBe(512);
      const perPixel = seg.estimateMemory(256, false) / (256 * 256);
      expect(perPixel).toBeGreaterThan(100);
      expect(seg.estimateMemory(256, true)).toBe(2 * seg.estimateMemory(256, false));
      await expect(seg.predict(files.png, { size: 1024 })).rejects.toMatchObject({ code: 'SIZE_TOO_LARGE' });
      await expect(seg.predict(files.png, { size: 512, tta: true })).rejects.toMatchObject({ code: 'OVER_MEMORY_BUDGET' });
      expect((await seg.predict(files.png)).size).toBe(64);
    } finally {
      seg.dispose();
    }
    // The trained size is the default limit; a limit below the size is an error.
    const byDefault = await Segmenter.load(trained, { size: 64 });
    expect(byDefault.options.maxSize).toBe(64);
    byDefault.dispose();
    await expect(Segmenter.load(trained, { size: 128, maxSize: 64 })).rejects.toThrow(/maxSize/);
  }, 120_000);
});
