#!/usr/bin/env node
// Benchmark runner (`npm run bench [-- NAMES...] [--quick]`): runs bench/<name>.bench.mjs, each of
// which measures pneumo-native beside a baseline measured in the same run, and writes
// bench/results/latest.json and latest.md (plus a timestamped copy). Timings are reported, never
// asserted.
//
// A bench module exports `async function run(ctx)`, ctx = { tmpDir, quick, log }, returning
// entries { group, name, unit, value, baseline: { name, value }, higherIsBetter, goal?, notes? }.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const benchDir = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const wanted = argv.filter((a) => !a.startsWith('--'));
const available = readdirSync(benchDir)
  .filter((f) => f.endsWith('.bench.mjs'))
  .map((f) => basename(f, '.bench.mjs'))
  .sort();
const unknown = wanted.filter((w) => !available.includes(w));
if (unknown.length > 0) {
  process.stderr.write(`bench: unknown benchmark(s) ${unknown.join(', ')}; available: ${available.join(', ')}\n`);
  process.exit(2);
}
const selected = wanted.length > 0 ? wanted : available;

/** value / baseline, inverted when lower is better, so > 1 always means pneumo-native is ahead. */
export function ratioOf(entry) {
  const { value, baseline, higherIsBetter } = entry;
  if (!(value > 0) || !(baseline?.value > 0)) return null;
  return higherIsBetter ? value / baseline.value : baseline.value / value;
}

function fmt(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '-';
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 0.1 ? x.toFixed(2) : x.toPrecision(2);
}

function markdown(results, meta) {
  const lines = [
    `# pneumo-native benchmarks`,
    '',
    `${meta.date} - ${meta.cpu} x ${meta.cores} cores - Node ${meta.node}${meta.quick ? ' - quick mode' : ''}`,
    '',
    'Ratio > 1 means pneumo-native is ahead of the baseline measured in the same run.',
    '',
    '| group | measurement | pneumo-native | baseline | ratio | goal | notes |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    if (r.error) {
      lines.push(`| ${r.bench} | (failed) | - | - | - | - | ${r.error.replace(/\|/g, '/').split('\n')[0]} |`);
      continue;
    }
    const goal = r.goal === undefined ? '' : `>= ${r.goal}${r.ratio !== null ? (r.ratio >= r.goal ? ' (met)' : ' (missed)') : ''}`;
    lines.push(
      `| ${r.group} | ${r.name} | ${fmt(r.value)} ${r.unit} | ${fmt(r.baseline?.value)} ${r.unit} (${r.baseline?.name ?? '-'}) | ${r.ratio === null ? '-' : `${fmt(r.ratio)}x`} | ${goal} | ${(r.notes ?? '').replace(/\|/g, '/')} |`,
    );
  }
  return `${lines.join('\n')}\n`;
}

const meta = {
  date: new Date().toISOString(),
  cpu: cpus()[0]?.model ?? 'unknown CPU',
  cores: availableParallelism(),
  node: process.versions.node,
  quick,
};
const results = [];
let failed = false;
for (const name of selected) {
  const tmpDir = mkdtempSync(join(tmpdir(), `pn-bench-${name}-`));
  const log = (msg) => process.stderr.write(`[${name}] ${msg}\n`);
  log(`running${quick ? ' (quick)' : ''}...`);
  const started = Date.now();
  try {
    const mod = await import(pathToFileURL(join(benchDir, `${name}.bench.mjs`)).href);
    const entries = await mod.run({ tmpDir, quick, log });
    for (const e of entries) results.push({ bench: name, ...e, ratio: ratioOf(e) });
    log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } catch (err) {
    failed = true;
    log(`FAILED: ${err?.stack ?? err}`);
    results.push({ bench: name, error: String(err?.message ?? err) });
  } finally {
    rmSync(tmpDir, { recursive: true, force: true });
  }
}

const outDir = join(benchDir, 'results');
mkdirSync(outDir, { recursive: true });
const md = markdown(results, meta);
const json = `${JSON.stringify({ meta, results }, null, 2)}\n`;
const stamp = meta.date.replace(/[:.]/g, '-');
writeFileSync(join(outDir, 'latest.json'), json);
writeFileSync(join(outDir, 'latest.md'), md);
writeFileSync(join(outDir, `${stamp}.json`), json);
process.stdout.write(md);
process.stderr.write(`bench: results in ${join(outDir, 'latest.md')} and latest.json\n`);
process.exit(failed ? 1 : 0);
