/** `pneumo-native dicom-info` on files, directories, bad and missing paths (compiled CLI). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDicom } from '../../src/data/dicom-write.js';
import { tempDir, testImage } from '../data/dicom-fixtures.js';
import { parseJson, runCli } from '../helpers/cli.js';

const tmp = tempDir('dicom-info');
const dir = join(tmp.dir, 'dicom-images-test', '1.2.3', '1.2.3.4');
const single = join(tmp.dir, 'single.dcm');
const broken = join(dir, 'broken.dcm');
const j2k = join(tmp.dir, 'j2k.dcm');
afterAll(() => tmp.cleanup());

beforeAll(async () => {
  mkdirSync(dir, { recursive: true });
  const pixels = testImage(64, 48);
  writeFileSync(join(dir, 'a.dcm'), await writeDicom({ pixels, width: 64, height: 48 }, { encoding: 'jpeg-baseline', tags: { viewPosition: 'AP', patientSex: 'F', patientAge: '058Y', pixelSpacing: [0.139, 0.139] } }));
  writeFileSync(join(dir, 'b.dcm'), await writeDicom({ pixels, width: 64, height: 48 }, { encoding: 'implicit-le', tags: { pixelSpacing: null, imagerPixelSpacing: [0.16, 0.16] } }));
  writeFileSync(broken, Buffer.alloc(10));
  const jpeg = await writeDicom({ pixels, width: 64, height: 48 }, { encoding: 'jpeg-baseline' });
  writeFileSync(single, jpeg);
  writeFileSync(j2k, Buffer.from(jpeg.toString('latin1').replace('1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.90'), 'latin1'));
});

describe('pneumo-native dicom-info', () => {
  it('prints a table for files and directories, then the failures, and exits 1', async () => {
    const missing = join(tmp.dir, 'missing.dcm');
    const result = await runCli(['dicom-info', single, join(tmp.dir, 'dicom-images-test'), missing]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^id\s+size\s+spacing mm\s+view\s+sex\s+age\s+frames\s+photometric\s+bits\s+syntax$/m);
    expect(result.stdout).toMatch(/^a\s+64x48\s+0\.139x0\.139\s+AP\s+F\s+58\s+1\s+MONOCHROME2\s+8\/8\s+JPEG Baseline \(Process 1\)$/m);
    expect(result.stdout).toMatch(/^b\s+64x48\s+0\.160x0\.160\s+PA\s+M\s+58\s+1\s+MONOCHROME2\s+8\/8\s+Implicit VR Little Endian$/m);
    expect(result.stdout).toMatch(/^single\s+64x48/m);
    expect(result.stdout).toContain('3 file(s) read, 2 failed');
    expect(result.stdout).toContain(`  ${broken}: not a DICOM Part 10 file: only 10 bytes`);
    expect(result.stdout).toContain(`  ${missing}: cannot read: ENOENT`);
  });

  it('--json prints one object; --decode also checks the pixels', async () => {
    const header = parseJson<{ files: { id: string; transferSyntax: { uid: string } }[]; failures: unknown[] }>(await runCli(['dicom-info', j2k, single, '--json']));
    expect(header.files.map((f) => [f.id, f.transferSyntax.uid])).toEqual([
      ['j2k', '1.2.840.10008.1.2.4.90'],
      ['single', '1.2.840.10008.1.2.4.50'],
    ]);
    expect(header.failures).toEqual([]);
    const decoded = await runCli(['dicom-info', j2k, single, '--decode', '--json']);
    expect(decoded.code).toBe(1);
    const report = parseJson<{ files: { id: string }[]; failures: { file: string; reason: string }[] }>(decoded);
    expect(report.files.map((f) => f.id)).toEqual(['single']);
    expect(report.failures).toEqual([{ file: j2k, reason: expect.stringContaining('unsupported transfer syntax JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)') }]);
  });

  it('fails clearly when nothing is found', async () => {
    const empty = join(tmp.dir, 'empty');
    mkdirSync(empty);
    const result = await runCli(['dicom-info', empty]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`no .dcm files found under ${empty}`);
  });
});
