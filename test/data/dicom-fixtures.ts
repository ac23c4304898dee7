/** Shared fixtures for the DICOM tests: deterministic images, temp dirs, byte surgery. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';

/** A deterministic radiograph-like 8-bit test image: smooth structure plus fine texture. */
export function testImage(width: number, height: number, phase = 0): Uint8Array {
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const v = 120 + 70 * Math.sin((x + phase) / 9) * Math.cos(y / 13) + 30 * Math.sin((x * y) / 300 + phase) + ((x * 31 + y * 17 + phase) % 7);
      out[y * width + x] = Math.max(0, Math.min(255, Math.round(v)));
    }
  }
  return out;
}

/** Mean absolute difference of two equal-length arrays. */
export function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let sum = 0;
  for (let i = 0; i < a.length; i += 1) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

/** Largest absolute difference of two equal-length arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i += 1) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** A fresh temp directory and its cleanup. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `pneumo-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Replaces the first occurrence of `from` by `to` (same length) in a copy of `bytes`. */
export function patchBytes(bytes: Uint8Array, from: Uint8Array | string, to: Uint8Array | string): Buffer {
  const a = typeof from === 'string' ? Buffer.from(from, 'latin1') : Buffer.from(from);
  const b = typeof to === 'string' ? Buffer.from(to, 'latin1') : Buffer.from(to);
  if (a.length !== b.length) throw new Error('patchBytes needs equal lengths');
  const out = Buffer.from(bytes);
  const at = out.indexOf(a);
  if (at < 0) throw new Error(`pattern ${a.toString('hex')} not found`);
  b.copy(out, at);
  return out;
}

/** Removes the explicit-VR element with 2-byte length starting with tag (group, element). */
export function removeShortElement(bytes: Uint8Array, group: number, element: number, vr: string): Buffer {
  const head = Buffer.alloc(6);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(element, 2);
  head.write(vr, 4, 'latin1');
  const buf = Buffer.from(bytes);
  const at = buf.indexOf(head);
  if (at < 0) throw new Error(`element (${group.toString(16)},${element.toString(16)}) not found`);
  const length = buf.readUInt16LE(at + 6);
  return Buffer.concat([buf.subarray(0, at), buf.subarray(at + 8 + length)]);
}

/** The dcmtk tools the tests call; throws an actionable error if dcmtk is not installed. */
export function requireDcmtk(): void {
  try {
    execFileSync('dcmdjpeg', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('dcmtk is not installed: run `apt-get install -y --no-install-recommends dcmtk` (needed by the DICOM interoperability tests)');
  }
}

/** Runs a dcmtk tool, failing with its stderr. */
export function dcmtk(tool: string, args: string[]): void {
  execFileSync(tool, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Parses a binary PGM (P5, 8-bit) into its pixels. */
export function parsePgm(bytes: Buffer): { width: number; height: number; pixels: Uint8Array } {
  const text = bytes.subarray(0, 64).toString('latin1');
  const match = /^P5\s+(\d+)\s+(\d+)\s+(\d+)\s/.exec(text);
  if (!match) throw new Error('not a binary PGM');
  const width = Number(match[1]);
  const height = Number(match[2]);
  if (Number(match[3]) !== 255) throw new Error('only 8-bit PGM');
  const start = match[0].length;
  return { width, height, pixels: new Uint8Array(bytes.subarray(start, start + width * height)) };
}
