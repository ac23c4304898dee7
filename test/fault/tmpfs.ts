/**
 * Small file systems for the fault-injection tests: a tmpfs of a few MiB mounted on a temporary
 * folder (root only), filled to leave a chosen number of bytes free, or remounted read-only.
 * Where mounting is impossible (not root, no CAP_SYS_ADMIN) the suites that need one are
 * skipped with one line saying why.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Why a tmpfs cannot be mounted here, or null when it can (probed once). */
let probed: string | null | undefined;
export function tmpfsUnavailable(): string | null {
  if (probed !== undefined) return probed;
  const dir = mkdtempSync(join(tmpdir(), 'pn-tmpfs-probe-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status === 0) {
    spawnSync('umount', [dir]);
    probed = null;
  } else {
    probed = `cannot mount a tmpfs (${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}): the disk-full tests need root`;
  }
  rmSync(dir, { recursive: true, force: true });
  return probed;
}

/** A mounted tmpfs: `dir` is its root. */
export class Tmpfs {
  private constructor(readonly dir: string) {}

  /** Mounts a tmpfs of `bytes` (rounded up to 4 KiB pages) on a new temporary folder. */
  static mount(bytes: number): Tmpfs {
    const dir = mkdtempSync(join(tmpdir(), 'pn-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${Math.ceil(bytes / 4096) * 4}k,mode=0777`, 'tmpfs', dir]);
    return new Tmpfs(dir);
  }

  /** Bytes a new file can still take. */
  free(): number {
    const s = statfsSync(this.dir);
    return s.bavail * s.bsize;
  }

  /** Writes a filler file so that about `leave` bytes stay free (pages of 4 KiB). */
  fill(leave: number): void {
    const filler = join(this.dir, '.filler');
    rmSync(filler, { force: true });
    const size = this.free() - Math.ceil(leave / 4096) * 4096;
    if (size > 0) writeFileSync(filler, Buffer.alloc(size));
  }

  /** Removes the filler: the whole tmpfs is free again but for the files written. */
  unfill(): void {
    rmSync(join(this.dir, '.filler'), { force: true });
  }

  /** Removes every file (the filler too). */
  async clear(): Promise<void> {
    for (const name of await readdir(this.dir)) await rm(join(this.dir, name), { recursive: true, force: true });
  }

  readOnly(on: boolean): void {
    execFileSync('mount', ['-o', `remount,${on ? 'ro' : 'rw'}`, this.dir]);
  }

  unmount(): void {
    spawnSync('umount', ['-l', this.dir]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The temporary files of pneumo-native under `dir` (recursively): none may be left behind. */
export async function leftoverTemps(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else if (e.name.startsWith('.pneumo-tmp-') || /\.tmp(-\d+)*$/.test(e.name) || /\.tmp-/.test(e.name)) out.push(join(d, e.name));
    }
  };
  await walk(dir);
  return out;
}
