/**
 * End to end through the built package: `pneumo-native serve` (answers, then drains the request
 * in flight on SIGTERM and exits 0) and the embedding example examples/embed.mjs.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode as decodeRle } from '../../src/data/rle.js';
import { cliPath, repoRoot } from '../helpers/cli.js';
import { IMAGE, SIZE, chestFiles, randomBytes, tinyModel } from './fixtures.js';
import type { ChestFiles } from './fixtures.js';
import { send } from './http.js';

const dir = mkdtempSync(join(tmpdir(), 'pn-serve-'));
const modelPath = join(dir, 'tiny.pt');
let files: ChestFiles;

beforeAll(async () => {
  const model = await tinyModel(5);
  await model.save(modelPath, { metadata: { note: 'serve tests' } });
  model.dispose();
  files = await chestFiles(4);
  writeFileSync(join(dir, 'a.dcm'), files.dicomJpeg);
  writeFileSync(join(dir, 'b.png'), files.png);
  writeFileSync(join(dir, 'bad.dcm'), randomBytes(3000, 8));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function collect(stream: NodeJS.ReadableStream): { text: string } {
  const out = { text: '' };
  stream.on('data', (d: Buffer) => (out.text += d.toString()));
  return out;
}

describe('pneumo-native serve', () => {
  it('serves, and on SIGTERM finishes the request in flight, refuses new connections and exits 0', async () => {
    const child = spawn(process.execPath, [cliPath, 'serve', '--model', modelPath, '--port', '0', '--size', String(SIZE), '--max-wait-ms', '1500', '--json'], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const started = Date.now();
      while (!stdout.text.includes('\n')) {
        if (child.exitCode !== null || Date.now() - started > 60_000) throw new Error(`serve did not start:\n${stderr.text}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const ready = JSON.parse(stdout.text.split('\n')[0]!) as { url: string; port: number };
      expect(ready.url).toBe(`http://127.0.0.1:${ready.port}`);
      expect((await send(`${ready.url}/healthz`)).json()).toMatchObject({ status: 'ok', size: SIZE });

      // The request waits up to 1.5 s in the queue for companions: SIGTERM arrives meanwhile.
      const inFlight = send(`${ready.url}/v1/segment`, { body: files.dicomJpeg, headers: { 'Content-Type': 'application/dicom' } });
      for (;;) {
        const metrics = (await send(`${ready.url}/metrics`)).body.toString();
        if (/^pneumo_queue_depth 1$/m.test(metrics)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill('SIGTERM');
      const reply = await inFlight;
      expect(reply.status).toBe(200);
      const r = reply.json();
      expect(r).toMatchObject({ width: IMAGE, height: IMAGE, size: SIZE });
      expect(decodeRle(r.rle as string, IMAGE, IMAGE).reduce((s, v) => s + v, 0)).toBe(r.area);
      expect(await exited).toBe(0);
      expect(stderr.text).toMatch(/SIGTERM: draining 1 request\(s\) in flight/);
      expect(stderr.text).toMatch(/drained, exiting/);
      await expect(send(`${ready.url}/healthz`)).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('exits with a clear error for a missing model or a taken port', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [cliPath, 'serve', ...args], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
        const err = collect(child.stderr);
        child.on('exit', (code) => resolve({ code, stderr: err.text }));
      });
    const missing = await run(['--model', join(dir, 'nope.pt'), '--port', '0']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/Model file .*nope\.pt does not exist/);
    const bad = await run(['--model', modelPath, '--port', '70000']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--port must be an integer between 0 and 65535/);
  });
});

describe('examples/embed.mjs', () => {
  it('segments files concurrently through the package entry and reports a bad file by its code', async () => {
    const child = spawn(process.execPath, [join(repoRoot, 'examples', 'embed.mjs'), modelPath, join(dir, 'a.dcm'), join(dir, 'b.png'), join(dir, 'bad.dcm'), '--size', String(SIZE)], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, stderr.text).toBe(0);
    const out = JSON.parse(stdout.text) as { model: string; results: Record<string, unknown>[]; stats: { completed: number; failed: number; batches: number } };
    expect(out.model).toMatch(/tiny_unet_r18/);
    expect(out.results).toHaveLength(3);
    const [a, b, bad] = out.results;
    for (const r of [a!, b!]) {
      expect(r).toMatchObject({ width: IMAGE, height: IMAGE });
      expect(decodeRle(r.rle as string, IMAGE, IMAGE).reduce((s, v) => s + v, 0)).toBe(r.area);
    }
    expect(bad).toMatchObject({ error: 'BAD_INPUT' });
    expect(out.stats.completed).toBe(2);
    expect(out.stats.batches).toBeLessThanOrEqual(2);
    expect(stderr.text).toMatch(/a\.dcm: (no )?pneumothorax, area \d+ px of 128x128/);
    expect(stderr.text).toMatch(/bad\.dcm: BAD_INPUT: /);
  });
});
