/**
 * Resumable stages shared by the demo and the seed pipelines: each stage leaves a marker
 * (`<workdir>/stages/<name>.json`) with its parameters, its result and its duration; a later run
 * with the same parameters reuses the result, and one with other parameters runs the stage again.
 * An interrupted stage leaves no marker, and the commands it runs resume themselves.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** What a stage's marker holds. */
export interface StageMarker {
  params: unknown;
  result: unknown;
  seconds: number;
}

/** A stage as reports list it. */
export interface StageRecord {
  name: string;
  seconds: number;
  reused: boolean;
  detail?: string;
}

/** The marker file of stage `name`. */
export function stageMarkerPath(workdir: string, name: string): string {
  return join(workdir, 'stages', `${name.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}

/** The marker of `name` when it ran with exactly `params`, else null. */
export function readStageMarker(workdir: string, name: string, params: unknown): StageMarker | null {
  const marker = stageMarkerPath(workdir, name);
  if (!existsSync(marker)) return null;
  const saved = JSON.parse(readFileSync(marker, 'utf8')) as StageMarker;
  return JSON.stringify(saved.params) === JSON.stringify(params) ? saved : null;
}

/**
 * Runs `work` unless the stage's marker says it already ran with `params`; records the stage in
 * `stages` (reused or not, with its duration) and logs `<prefix>: <name>...` lines.
 */
export async function runStage<T>(
  workdir: string,
  stages: StageRecord[],
  name: string,
  params: unknown,
  log: (m: string) => void,
  work: () => Promise<{ result: T; detail?: string }>,
  prefix = 'demo',
): Promise<T> {
  const saved = readStageMarker(workdir, name, params);
  if (saved) {
    stages.push({ name, seconds: saved.seconds, reused: true });
    log(`${prefix}: ${name}: reusing the earlier run`);
    return saved.result as T;
  }
  log(`${prefix}: ${name}...`);
  const started = performance.now();
  const { result, detail } = await work();
  const seconds = (performance.now() - started) / 1000;
  const marker = stageMarkerPath(workdir, name);
  mkdirSync(dirname(marker), { recursive: true });
  await writeFile(`${marker}.tmp`, JSON.stringify({ params, result, seconds } satisfies StageMarker, null, 2));
  await rename(`${marker}.tmp`, marker);
  stages.push({ name, seconds, reused: false, ...(detail ? { detail } : {}) });
  log(`${prefix}: ${name}: done in ${seconds.toFixed(1)} s${detail ? ` (${detail})` : ''}`);
  return result;
}
