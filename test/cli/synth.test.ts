/** `pneumo-native synth` through the compiled CLI (dist/): worker pool, determinism, resume. */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, runCli } from '../helpers/cli.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pn-cli-synth-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Every file under `root` (relative path -> bytes). */
async function snapshot(root: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const walk = async (folder: string): Promise<void> => {
    for (const entry of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) await walk(path);
      else files.set(relative(root, path), await readFile(path));
    }
  };
  await walk(root);
  return files;
}

interface Report {
  train: { images: number; positive: number; regions: number };
  test: { images: number; positive: number };
  written: number;
  skipped: number;
  workers: number;
}

const args = (out: string, workers: number, extra: string[] = []) => ['synth', '--out', out, '--train', '6', '--test', '3', '--seed', '4', '--size', '128', '--positive-rate', '0.5', '--workers', String(workers), '--json', ...extra];

describe('pneumo-native synth', () => {
  it('writes the SIIM layout, byte-identical whatever the number of workers', async () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    const first = await runCli(args(a, 2));
    expect(first.code, first.stderr).toBe(0);
    const report = parseJson<Report>(first);
    expect(report).toMatchObject({ train: { images: 6, positive: 3 }, test: { images: 3, positive: 2 }, written: 9, skipped: 0, workers: 2 });
    expect(first.stderr).toMatch(/synth 9\/9 \(100%\)/);
    const second = await runCli(args(b, 1));
    expect(second.code, second.stderr).toBe(0);
    const [filesA, filesB] = await Promise.all([snapshot(a), snapshot(b)]);
    expect([...filesA.keys()].sort()).toEqual([...filesB.keys()].sort());
    for (const [name, bytes] of filesA) expect(bytes.equals(filesB.get(name) as Buffer), name).toBe(true);
    const names = [...filesA.keys()];
    expect(names.filter((n) => n.startsWith('dicom-images-train/') && n.endsWith('.dcm'))).toHaveLength(6);
    expect(names.filter((n) => n.startsWith('dicom-images-test/') && n.endsWith('.dcm'))).toHaveLength(3);
    for (const name of ['train-rle.csv', 'test-rle.csv', 'stage_2_sample_submission.csv', 'manifest.json']) expect(names).toContain(name);
    expect(names.every((n) => !n.endsWith('.dcm') || n.split('/').length === 4)).toBe(true);
  });

  it('resumes without rewriting and refuses a directory made with other parameters', async () => {
    const a = join(dir, 'a');
    const again = await runCli(args(a, 2));
    expect(again.code, again.stderr).toBe(0);
    expect(parseJson<Report>(again)).toMatchObject({ written: 0, skipped: 9 });
    const other = await runCli(['synth', '--out', a, '--train', '6', '--test', '3', '--seed', '5', '--size', '128', '--positive-rate', '0.5']);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/holds a synthetic dataset made with other parameters \(seed 4 -> 5\)/);
  });

  it('rejects bad options as usage errors', async () => {
    const small = await runCli(['synth', '--out', join(dir, 'c'), '--train', '2', '--size', '10']);
    expect(small.code).toBe(2);
    expect(small.stderr).toMatch(/--size must be an integer between 64 and 4096 \(got 10\)/);
    const none = await runCli(['synth', '--out', join(dir, 'c'), '--train', '0']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/ask for at least one image/);
  });
});
