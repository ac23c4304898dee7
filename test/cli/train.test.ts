/**
 * `pneumo-native train` through the compiled CLI on a tiny prepared synthetic dataset
 * (tiny_unet_r18 at 64 px): exact resume after a real `kill -9`, a NaN loss stopping the run with
 * its last good checkpoint kept, `--preview`, and errors that name the bad flag.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../../src/models/model.js';
import { cliPath, parseJson, repoRoot, runCli } from '../helpers/cli.js';
import { makeTrainFixture } from '../training/train-fixture.js';
import type { TrainFixture } from '../training/train-fixture.js';

let fixture: TrainFixture;
beforeAll(async () => {
  fixture = await makeTrainFixture();
}, 120_000);
afterAll(async () => {
  if (fixture) await rm(fixture.root, { recursive: true, force: true });
});

function trainArgs(name: string, epochs: number, extra: string[] = []): string[] {
  return [
    'train',
    '--data-dir', fixture.data,
    '--backbone', 'tiny_unet_r18',
    '--img-size', '64',
    '--epochs', String(epochs),
    '--batch-size', '4',
    '--lr', '1e-3',
    '--seed', '5',
    '--device', 'cpu',
    '--fold', '0',
    '--name', name,
    '--output', join(fixture.root, 'runs'),
    '--scheduler.kind', 'plateau',
    '--scheduler.patience', '0',
    '--scheduler.factor', '0.5',
    '--training.earlyStopping', '0',
    '--checkpoints.topK', '2',
    ...extra,
  ];
}

function runDir(name: string): string {
  return join(fixture.root, 'runs', name, 'part0', 'fold0');
}

/** metrics.jsonl without the wall-clock figures (the rest must match exactly). */
function metricsOf(name: string): unknown[] {
  return readFileSync(join(runDir(name), 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const r = JSON.parse(line) as Record<string, unknown> & { validation: Record<string, unknown> | null };
      const { seconds: _s, imagesPerSecond: _i, dataWait: _d, ...rest } = r;
      void [_s, _i, _d];
      if (rest.validation) {
        const { seconds: _vs, ...v } = rest.validation;
        void _vs;
        rest.validation = v;
      }
      return rest;
    });
}

/** Starts the CLI and kills it with SIGKILL as soon as stderr matches `when`; resolves once it is dead. */
function killWhen(args: string[], when: RegExp): Promise<{ signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stdout.resume();
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (when.test(stderr) && child.exitCode === null) child.kill('SIGKILL');
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`never matched ${when}:\n${stderr}`));
    }, 150_000);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      resolve({ signal, stderr });
    });
  });
}

describe('pneumo-native train', () => {
  it('resumes exactly after kill -9: the same metrics as an uninterrupted run', async () => {
    const whole = await runCli(trainArgs('whole', 3, ['--json']), { timeoutMs: 170_000 });
    expect(whole.code, whole.stderr).toBe(0);
    const result = parseJson<{ folds: { fold: number; epochsRun: number; best: { score: number; validation: { emptyBaseline: number } } }[] }>(whole);
    expect(result.folds[0]!.epochsRun).toBe(3);
    expect(whole.stderr).toMatch(/val Dice [\d.]+ at \([\d., ]+\) \(all-empty baseline [\d.]+\)/);

    // Killed while epoch 1 runs (epoch 0's line is logged once last.ckpt holds it).
    const killed = await killWhen(trainArgs('killed', 3), /\[fold 0\] epoch 0: loss/);
    expect(killed.signal).toBe('SIGKILL');
    expect(existsSync(join(runDir('killed'), 'last.ckpt'))).toBe(true);
    const resumed = await runCli(trainArgs('killed', 3, ['--resume']), { timeoutMs: 170_000 });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resuming .* at epoch [12]/);
    expect(metricsOf('killed')).toEqual(metricsOf('whole'));
    expect(readFileSync(join(runDir('killed'), 'summary.csv'), 'utf8').split('\n').map((l) => l.split(',').slice(0, 8).join())).toEqual(
      readFileSync(join(runDir('whole'), 'summary.csv'), 'utf8').split('\n').map((l) => l.split(',').slice(0, 8).join()),
    );
  }, 400_000);

  it('stops on a NaN loss with a clear message and keeps the last good checkpoint', async () => {
    const first = await runCli(trainArgs('nan', 1));
    expect(first.code, first.stderr).toBe(0);
    // Continue the run for a second epoch with inputs that overflow to infinity (max_pixel_value tiny).
    const broken = join(fixture.root, 'overflow.json');
    await writeFile(broken, JSON.stringify({ type: 'Compose', transforms: [{ type: 'Normalize', mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], max_pixel_value: 1e-300 }] }));
    const diverged = await runCli(trainArgs('nan', 2, ['--resume', '--augment.file', broken]));
    expect(diverged.code).toBe(1);
    expect(diverged.stderr).toContain('the config differs from the one the run started with (augment.file, training.epochs)');
    expect(diverged.stderr).toMatch(/training diverged: the loss is (NaN|-?Infinity) at epoch 1, step 0 .*the last good checkpoint is .*last\.ckpt \(after epoch 0\)/);
    const last = await Model.loadCheckpoint(join(runDir('nan'), 'last.ckpt'));
    expect((last.metadata.trainer as { epoch: number }).epoch).toBe(1);
    last.model.dispose();
    for (const t of last.optimizer.values()) t.dispose();
    expect(existsSync(join(runDir('nan'), 'best.ckpt'))).toBe(true);
    expect(readFileSync(join(runDir('nan'), 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
  }, 200_000);

  it('--preview writes a PNG grid of augmented training samples and exits', async () => {
    const out = join(fixture.root, 'preview.png');
    const r = await runCli(['train', '--data-dir', fixture.data, '--img-size', '64', '--preview', '4', '--preview-out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = parseJson<{ out: string; ids: string[] }>(r);
    expect(report.out).toBe(out);
    expect(report.ids).toHaveLength(4);
    const meta = await sharp(out).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBeGreaterThan(2 * 64);
  });

  it('names bad flags and values', async () => {
    const typo = await runCli(['train', '--data-dir', fixture.data, '--optimizer.lrr', '1e-3']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('unknown flag --optimizer.lrr (did you mean --optimizer.lr?)');
    const notNumber = await runCli(['train', '--data-dir', fixture.data, '--epochs', 'many']);
    expect(notNumber.code).toBe(2);
    expect(notNumber.stderr).toContain('--epochs: expected a number');
    const range = await runCli(['train', '--data-dir', fixture.data, '--optimizer.kind', 'adamm']);
    expect(range.code).toBe(2);
    expect(range.stderr).toMatch(/optimizer\.kind: expected one of adam, adamw, sgd, radam but got "adamm"/);
    const noData = await runCli(['train', '--backbone', 'tiny_unet_r18']);
    expect(noData.code).toBe(2);
    expect(noData.stderr).toContain('set data.dir');
    const fold = await runCli(trainArgs('badfold', 1, ['--fold', '7']));
    expect(fold.code).toBe(1);
    expect(fold.stderr).toContain('Expected folds between 0 and 3');
    const missing = await runCli(['train', '--config', join(fixture.root, 'nope.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope\.yaml: invalid experiment config:\n\s+- cannot read the file \(ENOENT\)/);
  }, 60_000);
});
