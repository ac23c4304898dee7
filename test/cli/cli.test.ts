import { describe, expect, it } from 'vitest';
import { commands } from '../../src/cli/commands/index.js';
import { parseJson, runCli } from '../helpers/cli.js';

describe('pneumo-native CLI', () => {
  it('info --json prints one JSON object with versions, CUDA, threads and BLAS', async () => {
    const result = await runCli(['info', '--json']);
    expect(result.code).toBe(0);
    const info = parseJson<{ libtorch: { version: string }; threads: { intraOp: number }; blas: { name: string }; cuda: { available: boolean } }>(result);
    expect(info.libtorch.version).toMatch(/^\d+\.\d+/);
    expect(info.threads.intraOp).toBeGreaterThan(0);
    expect(info.blas.name).toMatch(/BLAS|MKL|BLIS/);
    expect(typeof info.cuda.available).toBe('boolean');
  });

  it('info prints a readable table', async () => {
    const result = await runCli(['info']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^LibTorch\s+\d/m);
    expect(result.stdout).toMatch(/^BLAS\s+/m);
  });

  it('check reports the runtime and trains the smoke model (--json)', async () => {
    const result = await runCli(['check', '--json', '--steps', '8', '--size', '32', '--batch', '2']);
    expect(result.code, result.stderr).toBe(0);
    const check = parseJson<{ runtime: { libtorch: { version: string } }; smoke: { losses: number[]; lossDrop: number; gradientsFinite: boolean } }>(result);
    expect(check.smoke.losses).toHaveLength(8);
    expect(check.smoke.lossDrop).toBeGreaterThan(0);
    expect(check.smoke.gradientsFinite).toBe(true);
    expect(result.stderr).toMatch(/smoke training pass/);
  });

  it('every command has --help', async () => {
    const names = commands.map((c) => String(c.command).split(' ')[0]!);
    expect(names).toContain('info');
    for (const name of names) {
      const result = await runCli([name, '--help']);
      expect(result.code, `${name} --help: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain(`pneumo-native ${name}`);
    }
  });

  it('an unknown command or option is a usage error (exit 2) naming it', async () => {
    const unknown = await runCli(['trian']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/trian/);
    const option = await runCli(['info', '--jsno']);
    expect(option.code).toBe(2);
    expect(option.stderr).toMatch(/jsno/);
  });
});
