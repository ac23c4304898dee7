// Threshold-search bench: mean Dice of 100 (top, area, bottom) triplets over 2,000 uint8
// probability maps (128 x 128, as the map store keeps them) against their truth, pneumo-native's
// native search (each map summarised once, every triplet scored from the summaries) against numpy
// in the same run: the first place's loop (every triplet thresholds every map again, vectorised
// over maps) and a numpy version that computes each distinct threshold once. All sides must agree
// on every triplet's score, or the bench fails.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inference, random } from '../dist/index.js';

const PYTHON = '/usr/bin/python3';
const SIZE = 128;

/** Blob maps: a bump where the truth is (22% of images), noise elsewhere; uint8 = round(p * 255). */
function makeMaps(count) {
  const rng = new random.Random(2019);
  const pixels = SIZE * SIZE;
  const maps = new Uint8Array(count * pixels);
  const truth = new Uint8Array(count * pixels);
  for (let m = 0; m < count; m++) {
    const positive = rng.next() < 0.22;
    const cy = 20 + rng.next() * (SIZE - 40);
    const cx = 20 + rng.next() * (SIZE - 40);
    const r = 4 + rng.next() * 14;
    const peak = positive ? 0.6 + 0.4 * rng.next() : 0.8 * rng.next();
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const d = Math.hypot(y - cy, x - cx) / r;
        const i = m * pixels + y * SIZE + x;
        maps[i] = Math.round(255 * Math.min(1, peak * Math.exp(-d * d * d) + 0.15 * rng.next()));
        if (positive && d < 1) truth[i] = 1;
      }
    }
  }
  return { maps, truth };
}

function grid() {
  const out = [];
  for (const top of [0.5, 0.6, 0.7, 0.75, 0.8]) for (const area of [0, 500, 1000, 2000, 3000]) for (const bottom of [0.2, 0.3, 0.4, 0.5]) out.push([top, area, bottom]);
  return out;
}

async function measureNative(maps, truth, count, triplets, repeat) {
  let best = Infinity;
  let scores;
  for (let round = 0; round < repeat; round++) {
    const started = performance.now();
    const summaries = await inference.summariseMaps(maps, SIZE, SIZE, { truth });
    scores = await inference.scoreTriplets(summaries, triplets, { areaSize: 1024 });
    best = Math.min(best, (performance.now() - started) / 1000);
  }
  if (scores.length !== triplets.length || summariesCount(scores) !== count) throw new Error('thresholds bench: wrong number of scores');
  return { seconds: best, dice: scores.map((s) => s.meanDice) };
}

function summariesCount(scores) {
  return scores[0].empty.count + scores[0].nonEmpty.count;
}

function measurePython(dir, maps, truth, count, triplets, repeat) {
  writeFileSync(join(dir, 'maps.bin'), maps);
  writeFileSync(join(dir, 'truth.bin'), truth);
  const script = fileURLToPath(new URL('./python/thresholds_baseline.py', import.meta.url));
  try {
    const out = execFileSync(
      PYTHON,
      [script, join(dir, 'maps.bin'), join(dir, 'truth.bin'), '--count', String(count), '--size', String(SIZE), '--triplets', JSON.stringify(triplets), '--repeat', String(repeat)],
      { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
    );
    return JSON.parse(out);
  } catch (err) {
    throw new Error(`thresholds bench: the numpy baseline failed (needs ${PYTHON} with numpy: apt-get install -y python3-numpy): ${err.stderr || err.message}`);
  }
}

function check(name, ours, theirs) {
  for (let j = 0; j < ours.length; j++) {
    if (Math.abs(ours[j] - theirs[j]) > 1e-9) throw new Error(`thresholds bench: triplet ${j} scores ${ours[j]} natively but ${theirs[j]} in numpy (${name})`);
  }
}

/**
 * @param {{ tmpDir: string, quick: boolean, log: (msg: string) => void }} ctx
 */
export async function run(ctx) {
  const count = ctx.quick ? 300 : 2000;
  const triplets = grid();
  const dir = join(ctx.tmpDir, 'thresholds-bench');
  mkdirSync(dir, { recursive: true });
  const { maps, truth } = makeMaps(count);
  ctx.log(`thresholds bench: ${count} maps of ${SIZE}x${SIZE} (uint8), ${triplets.length} triplets`);
  const native = await measureNative(maps, truth, count, triplets, ctx.quick ? 3 : 5);
  const numpy = measurePython(dir, maps, truth, count, triplets, ctx.quick ? 1 : 3);
  check('per triplet', native.dice, numpy.perTripletDice);
  check('per threshold', native.dice, numpy.perThresholdDice);
  const notes = `${count} maps ${SIZE}x${SIZE} uint8 x ${triplets.length} triplets; scores identical`;
  return [
    {
      group: 'thresholds',
      name: `triplet search, ${count} maps x ${triplets.length} triplets (vs numpy per-triplet thresholding)`,
      unit: 's',
      value: native.seconds,
      baseline: { name: `numpy ${numpy.numpy}, first place's loop`, value: numpy.perTripletSeconds },
      higherIsBetter: false,
      goal: 20,
      notes,
    },
    {
      group: 'thresholds',
      name: `triplet search, ${count} maps x ${triplets.length} triplets (vs numpy, each threshold once)`,
      unit: 's',
      value: native.seconds,
      baseline: { name: `numpy ${numpy.numpy}, distinct thresholds once`, value: numpy.perThresholdSeconds },
      higherIsBetter: false,
      notes,
    },
  ];
}
