/** The pure parts of data-parallel training: epoch and validation sharding, torchrun's environment, the launcher's argv. */
import { describe, expect, it } from 'vitest';
import { distributedEnv, shardEpoch, shardRange } from '../../src/distributed/index.js';
import { withoutFlags } from '../../src/distributed/launch.js';

describe('shardEpoch', () => {
  it("concatenating the ranks' batches of a step gives the 1-process global batch", () => {
    const order = Array.from({ length: 20 }, (_, i) => (i * 7) % 20);
    const b = 3;
    const ranks = [0, 1].map((r) => shardEpoch(order, b, r, 2));
    expect(ranks[0]!.steps).toBe(ranks[1]!.steps);
    expect(ranks[0]!.steps).toBe(Math.ceil(20 / 6));
    const rebuilt: number[] = [];
    let offsets = [0, 0];
    for (let s = 0; s < ranks[0]!.steps; s++) {
      const global = Math.min(6, 20 - s * 6);
      const per = global / 2;
      for (const r of [0, 1]) {
        rebuilt.push(...ranks[r]!.indices.slice(offsets[r]!, offsets[r]! + per));
        offsets[r] = offsets[r]! + per;
      }
    }
    offsets = [0, 0];
    expect(rebuilt).toEqual(order);
  });

  it('pads by wrapping around so every rank gets as many samples (DistributedSampler)', () => {
    const order = [5, 6, 7, 8, 9];
    const shards = [0, 1, 2].map((r) => shardEpoch(order, 4, r, 3));
    for (const s of shards) expect(s.indices.length).toBe(2);
    expect(new Set(shards.flatMap((s) => [...s.indices]))).toEqual(new Set(order));
    expect(shards.flatMap((s) => [...s.indices]).sort()).toEqual([5, 5, 6, 7, 8, 9]);
  });

  it('is the identity for one rank and rejects a bad rank', () => {
    expect([...shardEpoch([3, 1, 2], 2, 0, 1).indices]).toEqual([3, 1, 2]);
    expect(() => shardEpoch([1], 2, 2, 2)).toThrow(/rank/);
  });
});

describe('shardRange', () => {
  it('covers 0..n in contiguous ranges differing by at most one', () => {
    for (const [n, w] of [[10, 3], [2, 4], [0, 2], [7, 7]] as const) {
      let next = 0;
      for (let r = 0; r < w; r++) {
        const { start, end } = shardRange(n, r, w);
        expect(start).toBe(next);
        expect(end - start).toBeGreaterThanOrEqual(Math.floor(n / w));
        expect(end - start).toBeLessThanOrEqual(Math.ceil(n / w));
        next = end;
      }
      expect(next).toBe(n);
    }
  });
});

describe('distributedEnv (torchrun variables)', () => {
  it('is null for a plain run and parses a full environment', () => {
    expect(distributedEnv({})).toBeNull();
    expect(distributedEnv({ RANK: '1', WORLD_SIZE: '4', LOCAL_RANK: '0', MASTER_ADDR: 'node0', MASTER_PORT: '29400' })).toEqual({
      rank: 1,
      worldSize: 4,
      localRank: 0,
      masterAddr: 'node0',
      masterPort: 29400,
    });
  });

  it('names the variable that is missing or malformed', () => {
    expect(() => distributedEnv({ RANK: '0' })).toThrow(/WORLD_SIZE/);
    expect(() => distributedEnv({ RANK: '2', WORLD_SIZE: '2', MASTER_ADDR: 'a', MASTER_PORT: '1' })).toThrow(/between 0 and 1 in the environment variable RANK/);
    expect(() => distributedEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '1' })).toThrow(/MASTER_ADDR/);
    expect(() => distributedEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'a', MASTER_PORT: 'x' })).toThrow(/MASTER_PORT/);
  });
});

describe('withoutFlags', () => {
  it('drops the launcher flags in every spelling and keeps the rest', () => {
    expect(withoutFlags(['train', '--nproc', '2', '--epochs', '3', '--nproc=4', '--json', '--x'], { nproc: 'value', json: 'boolean' })).toEqual(['train', '--epochs', '3', '--x']);
  });
});
