/** `pneumo-native models`: the registry as a table and as JSON, with live parameter counts. */
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

describe('pneumo-native models', () => {
  it('lists every backbone with encoder, strides and parameters (--json --count)', async () => {
    const r = await runCli(['models', '--json', '--count'], { timeoutMs: 300_000 });
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as { name: string; encoder: string; strides: number[]; parameters: number; encoderParameters: number }[];
    const byName = new Map(rows.map((row) => [row.name, row]));
    for (const name of ['unet_se50', 'unet_se101', 'unet_ef3', 'unet_ef5', 'deeplab_se50', 'albunet34', 'unet_r50', 'scseunet_se50', 'unetpp_ef4']) {
      expect(byName.has(name)).toBe(true);
    }
    // smp's Unet(resnet34) has 24,436,369 parameters: same encoder, same decoder
    expect(byName.get('unet_r34')!.parameters).toBe(24_436_369);
    expect(byName.get('deeplab_se50')!.strides).toEqual([2, 4, 8, 16, 16]);
    for (const row of rows) expect(row.parameters).toBeGreaterThan(row.encoderParameters);
  });

  it('prints a table', async () => {
    const r = await runCli(['models']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/albunet34\s+albunet\s+resnet34/);
  });
});
