/**
 * Fault injection, full and read-only disks: every command that writes (submit, infer, blend,
 * thresholds, train's checkpoints, prepare) runs against a small tmpfs filled up (or remounted
 * read-only), and must fail with a non-zero exit naming the file and the cause, leave nothing that
 * looks complete (no final file, no temporary file, no map marked written that is not), and a
 * resumed run after space is freed must equal a clean run byte for byte.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileWriteError } from '../../src/core/atomic-write.js';
import { Tensor } from '../../src/core/tensor.js';
import { SYNTH_FILES, synthesize } from '../../src/data/synth/index.js';
import { MapReader } from '../../src/inference/maps.js';
import { Model } from '../../src/models/model.js';
import { runCli } from '../helpers/cli.js';
import { makeTrainFixture } from '../training/train-fixture.js';
import type { TrainFixture } from '../training/train-fixture.js';
import { Tmpfs, leftoverTemps, tmpfsUnavailable } from './tmpfs.js';

const unavailable = tmpfsUnavailable();
if (unavailable) console.log(`test/fault/disk-full.test.ts skipped: ${unavailable}`);

/** Every map of a file as stored bytes (for byte-for-byte comparisons). */
async function mapBytes(path: string): Promise<Buffer[]> {
  const r = await MapReader.open(path);
  try {
    const out: Buffer[] = [];
    for (let i = 0; i < r.count; i++) out.push(Buffer.from(await r.readRaw(i)));
    return out;
  } finally {
    await r.close();
  }
}

/** A partial map file: every map recorded as written must read back (its checksum holds). */
async function checkPartial(path: string): Promise<{ written: number; count: number }> {
  await expect(MapReader.open(path)).rejects.toThrow(/maps were never written/);
  const r = await MapReader.open(path, { requireComplete: false });
  try {
    let written = 0;
    for (let i = 0; i < r.count; i++) {
      if (r.written[i] !== 1) continue;
      await r.readRaw(i); // throws "is damaged" if a map were marked written without its bytes
      written++;
    }
    return { written, count: r.count };
  } finally {
    await r.close();
  }
}

describe.skipIf(unavailable !== null)('fault injection: a full or read-only disk', () => {
  let fs: Tmpfs;
  let root: string;
  let siim: string;
  let ckpt: string;
  let cleanMaps: string;
  let train: TrainFixture;
  const T = (...parts: string[]) => join(fs.dir, ...parts);

  beforeAll(async () => {
    fs = Tmpfs.mount(8 << 20);
    root = await mkdtemp(join(tmpdir(), 'pn-fault-'));
    siim = join(root, 'siim');
    await synthesize({ out: siim, train: 4, test: 6, seed: 3, size: 256, positiveRate: 0.5, workers: 0 });
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 1 });
    ckpt = join(root, 'model.ckpt');
    await model.save(ckpt, { metadata: { imgSize: 64 } });
    model.dispose();
    cleanMaps = join(root, 'clean.pnm');
    const r = await runCli(['infer', '--model', ckpt, '--images', join(siim, SYNTH_FILES.testDicom), '--size', '256', '--batch-size', '1', '--out', cleanMaps, '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    train = await makeTrainFixture(12, 64, 3);
  }, 600_000);

  afterAll(async () => {
    fs?.unmount();
    if (root) await rm(root, { recursive: true, force: true });
    if (train) await rm(train.root, { recursive: true, force: true });
  });

  it('submit: exit 1 naming the file and ENOSPC, no "Wrote", no file and no temporary file left', async () => {
    await fs.clear();
    fs.fill(0);
    const out = T('submission.csv');
    const r = await runCli(['submit', '--maps', cleanMaps, '--sample', join(siim, SYNTH_FILES.sampleSubmission), '--out', out, '--triplet', '0.2,0,0.2', '--quiet']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`cannot write ${out}: no space left on the device (ENOSPC)`);
    expect(r.stdout).not.toMatch(/Wrote/);
    expect(existsSync(out)).toBe(false);
    expect(await leftoverTemps(fs.dir)).toEqual([]);
    // With room, the same command writes every row.
    fs.unfill();
    const ok = await runCli(['submit', '--maps', cleanMaps, '--sample', join(siim, SYNTH_FILES.sampleSubmission), '--out', out, '--triplet', '0.2,0,0.2', '--quiet']);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await readFile(out, 'utf8')).trim().split('\n')).toHaveLength(1 + 6);
  }, 120_000);

  it('infer: fails naming the map file, marks no map written that is not, and resumes to the clean result', async () => {
    await fs.clear();
    const out = T('maps.pnm');
    // Room for the header and a few of the six 64 KiB maps, not all.
    fs.fill(200 << 10);
    const args = ['infer', '--model', ckpt, '--images', join(siim, SYNTH_FILES.testDicom), '--size', '256', '--batch-size', '1', '--out', out, '--quiet'];
    const r = await runCli(args);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`cannot write ${out}: no space left on the device (ENOSPC)`);
    const partial = await checkPartial(out);
    expect(partial.written).toBeLessThan(partial.count);
    expect(await leftoverTemps(fs.dir)).toEqual([]);
    fs.unfill();
    const resumed = await runCli([...args, '--json']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout).predicted).toBe(partial.count - partial.written);
    expect(await mapBytes(out)).toEqual(await mapBytes(cleanMaps));
  }, 180_000);

  it('blend: fails naming the output, and resumes to the clean blend', async () => {
    await fs.clear();
    const out = T('blend.pnm');
    const clean = join(root, 'blend-clean.pnm');
    const args = (to: string) => ['blend', '--maps', `${cleanMaps}:0.7`, '--maps', `${cleanMaps}:0.3`, '--size', '256', '--out', to, '--quiet'];
    expect((await runCli(args(clean))).code).toBe(0);
    fs.fill(200 << 10);
    const r = await runCli(args(out));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`cannot write ${out}: no space left on the device (ENOSPC)`);
    await checkPartial(out);
    fs.unfill();
    const resumed = await runCli(args(out));
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(await mapBytes(out)).toEqual(await mapBytes(clean));
  }, 120_000);

  it('thresholds --out: exit 1 naming the file, no JSON and no empty temporary file', async () => {
    await fs.clear();
    fs.fill(0);
    const out = T('thresholds.json');
    const r = await runCli(['thresholds', '--maps', cleanMaps, '--truth', join(siim, SYNTH_FILES.testLabels), '--grid', 'spec', '--out', out, '--quiet']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`cannot write ${out}: no space left on the device (ENOSPC)`);
    expect(readdirSync(fs.dir).filter((n) => n !== '.filler')).toEqual([]);
  }, 120_000);

  it('train: a checkpoint save on a full disk is a clean error (exit 1, not SIGABRT), nothing half-written is left', async () => {
    await fs.clear();
    // config.json and the logs fit; a 45 MB checkpoint does not.
    fs.fill(1 << 20);
    const runs = T('runs');
    const r = await runCli(
      ['train', '--data-dir', train.data, '--backbone', 'tiny_unet_r18', '--img-size', '64', '--epochs', '1', '--batch-size', '4', '--seed', '5', '--device', 'cpu', '--fold', '0', '--name', 'full', '--output', runs],
      { timeoutMs: 300_000 },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).not.toMatch(/terminate called|Aborted|core dumped/);
    expect(r.stderr).toMatch(new RegExp(`cannot write ${join(runs, 'full', 'part0', 'fold0').replace(/[/.]/g, '\\$&')}/(epoch000|last)\\.ckpt: no space left on the device \\(ENOSPC\\)`));
    const fold = join(runs, 'full', 'part0', 'fold0');
    expect(readdirSync(fold).filter((n) => n.endsWith('.ckpt'))).toEqual([]);
    expect(await leftoverTemps(fs.dir)).toEqual([]);
  }, 360_000);

  it('Model.save on a full disk rejects with FileWriteError; the model stays usable and saves elsewhere', async () => {
    await fs.clear();
    fs.fill(1 << 20);
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 2 });
    try {
      const err = await model.save(T('x.ckpt')).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(FileWriteError);
      expect((err as FileWriteError).code).toBe('ENOSPC');
      expect((err as FileWriteError).path).toBe(T('x.ckpt'));
      expect(readdirSync(fs.dir).filter((n) => n !== '.filler')).toEqual([]);
      const x = await Tensor.zeros([1, 3, 64, 64]);
      const out = await model.predict(x);
      expect(out.mask.shape).toEqual([1, 1, 64, 64]);
      out.mask.dispose();
      x.dispose();
      const elsewhere = join(root, 'after.ckpt');
      await model.save(elsewhere);
      (await Model.load(elsewhere)).dispose();
    } finally {
      model.dispose();
    }
  }, 120_000);

  it('prepare: stops at the first image it cannot write, naming it; every PNG left is whole', async () => {
    await fs.clear();
    fs.fill(24 << 10);
    const out = T('prep');
    const r = await runCli(['prepare', '--test-dicom', join(siim, SYNTH_FILES.testDicom), '--out', out, '--img-size', '256', '--workers', '1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cannot write \S+(\.png|prepare\.json): no space left on the device \(ENOSPC\)/);
    const test = join(out, 'test');
    for (const name of existsSync(test) ? readdirSync(test) : []) {
      const meta = await sharp(join(test, name)).metadata();
      expect(meta.width).toBe(256);
    }
    expect(await leftoverTemps(fs.dir)).toEqual([]);
  }, 120_000);

  it('a read-only folder is reported as read-only (EROFS), not ENOENT, naming the path', async () => {
    await fs.clear();
    await mkdir(T('sub'));
    fs.readOnly(true);
    try {
      const out = T('sub', 'submission.csv');
      const r = await runCli(['submit', '--maps', cleanMaps, '--sample', join(siim, SYNTH_FILES.sampleSubmission), '--out', out, '--quiet']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`cannot write ${out}: the file system is read-only (EROFS)`);
      const runs = T('runs');
      const t = await runCli(['train', '--data-dir', train.data, '--backbone', 'tiny_unet_r18', '--img-size', '64', '--epochs', '1', '--fold', '0', '--name', 'ro', '--output', runs]);
      expect(t.code).not.toBe(0);
      expect(t.stderr).toContain(`cannot write ${join(runs, 'ro', 'part0', 'fold0')}: the file system is read-only (EROFS)`);
      expect(t.stderr).not.toContain('ENOENT');
      const maps = T('sub', 'maps.pnm');
      const i = await runCli(['infer', '--model', ckpt, '--images', join(siim, SYNTH_FILES.testDicom), '--size', '64', '--out', maps, '--quiet']);
      expect(i.code).not.toBe(0);
      expect(i.stderr).toContain(`cannot write ${maps}: the file system is read-only (EROFS)`);
    } finally {
      fs.readOnly(false);
    }
  }, 120_000);
});

describe('stale temporary files', () => {
  it('are removed on the next write into their folder when their process is gone; a live one is kept', async () => {
    const { writeFileAtomic } = await import('../../src/core/atomic-write.js');
    const { spawnSync } = await import('node:child_process');
    const dir = await mkdtemp(join(tmpdir(), 'pn-stale-'));
    try {
      const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
      const stale = [`.pneumo-tmp-sub.csv.${dead}.0a0b0c0d`, `epoch003.ckpt.tmp-${dead}-123456`, `last.ckpt.tmp-${dead}`];
      const live = `.pneumo-tmp-other.csv.${process.pid}.01020304`;
      for (const n of [...stale, live]) await writeFile(join(dir, n), 'partial');
      await writeFileAtomic(join(dir, 'summary.csv'), 'a,b\n');
      expect(readdirSync(dir).sort()).toEqual([live, 'summary.csv'].sort());
      expect(statSync(join(dir, 'summary.csv')).size).toBe(4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
