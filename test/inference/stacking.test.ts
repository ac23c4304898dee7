import { describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { gateSegmentation, predictStacking, StackingModel, stackingFeatures, trainStacking } from '../../src/inference/stacking.js';

/** N = 3 noisy classifiers of a hidden label: positives near 0.75, negatives near 0.25. */
function dataset(seed: number, n: number) {
  const rng = new Random(seed);
  const labels: number[] = [];
  const probs: number[][] = [];
  for (let i = 0; i < n; i++) {
    const y = rng.next() < 0.3 ? 1 : 0;
    labels.push(y);
    probs.push([0, 1, 2].map(() => Math.min(1, Math.max(0, (y ? 0.75 : 0.25) + (rng.next() - 0.5) * 0.4))));
  }
  return { labels, probs };
}

describe('stacking', () => {
  it('builds 2N+1 features: probabilities, mean, halved circular neighbour differences', () => {
    const f = stackingFeatures([0.2, 0.4, 0.9]);
    const expected = [0.2, 0.4, 0.9, 0.5, 0.1, 0.25, -0.35];
    expect(f).toHaveLength(7);
    expected.forEach((v, i) => expect(f[i]).toBeCloseTo(v, 12));
    expect(stackingFeatures([0.3])).toHaveLength(3);
    expect(() => stackingFeatures([1.2])).toThrow(/Expected a number between 0 and 1 for probs\[0\] but received 1.2/);
  });

  it('trains over 5 folds on separable features and gates', () => {
    const train = dataset(1, 200);
    const ens = trainStacking(train.probs, train.labels, { seed: 7, epochs: 300 });
    expect(ens.models).toHaveLength(5);
    // every image is held out exactly once, folds stratified
    const perFold = [0, 1, 2, 3, 4].map((f) => ens.folds.filter((v) => v === f).length);
    expect(Math.max(...perFold) - Math.min(...perFold)).toBeLessThanOrEqual(2);
    const oofCorrect = train.labels.filter((y, i) => gateSegmentation(ens.oof[i]!, 0.5) === (y === 1)).length;
    expect(oofCorrect / 200).toBe(1);
    const test = dataset(2, 100);
    const stacked = predictStacking(ens.models, test.probs);
    const correct = test.labels.filter((y, i) => gateSegmentation(stacked[i]!) === (y === 1)).length;
    expect(correct).toBeGreaterThanOrEqual(98);
    // confident: positives well above the 0.65 gate, negatives well below
    const pos = [...stacked].filter((_, i) => test.labels[i] === 1);
    expect(Math.min(...pos)).toBeGreaterThan(0.65);
  });

  it('is deterministic given the seed and round-trips through JSON', () => {
    const { probs, labels } = dataset(3, 60);
    const a = trainStacking(probs, labels, { seed: 5, epochs: 50 });
    const b = trainStacking(probs, labels, { seed: 5, epochs: 50 });
    expect([...a.oof]).toEqual([...b.oof]);
    const c = trainStacking(probs, labels, { seed: 6, epochs: 50 });
    expect([...a.oof]).not.toEqual([...c.oof]);
    const m = StackingModel.fromJSON(JSON.parse(JSON.stringify(a.models[0]!.toJSON())));
    const x = stackingFeatures(probs[0]!);
    expect(m.predict(x)).toBe(a.models[0]!.predict(x));
  });

  it('gates at 0.65 by default', () => {
    expect(gateSegmentation(0.66)).toBe(true);
    expect(gateSegmentation(0.65)).toBe(false);
    expect(() => StackingModel.train([new Float64Array(3)], [2])).toThrow(/Expected 0 or 1 for labels\[0\] but received 2/);
  });
});
