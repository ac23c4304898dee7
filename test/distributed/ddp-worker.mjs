// One rank of the engine-level data-parallel test (test/distributed/ddp.test.ts), started with
// torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): joins the c10d
// group, trains tiny_unet_r18 on its slice of each global batch for STEPS steps, and rank 0 writes
// the parameters to OUT (JSON: name -> number[]).
//   argv: <out.json> <steps> <batch per rank> <mode: plain|freeze>
import { writeFileSync } from 'node:fs';
import { Tensor, TrainEngine, distributed, models } from '../../dist/index.js';
import { batchFor } from './ddp-data.mjs';

const [out, stepsArg, batchArg, mode] = process.argv.slice(2);
const steps = Number(stepsArg);
const batch = Number(batchArg);
const env = distributed.distributedEnv();
if (env === null) throw new Error('expected torchrun environment variables');
const group = await distributed.ProcessGroup.init({ ...env, backend: 'gloo', timeoutSeconds: 60 });
// Each rank builds the model from a different seed: the broadcast makes rank 0's weights everyone's.
const model = await models.Model.create({ backbone: 'tiny_unet_r18', seed: 100 + env.rank, device: 'cpu' });
await group.broadcastModel(model, 0);
const engine = TrainEngine.create(model, {
  optimizer: { algorithm: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 1e-4 },
  loss: [{ kind: 'combo', weight: 1, options: { bceWeight: 3, diceWeight: 1, focalWeight: 4, perImageDice: false } }],
  gradClip: 1,
});
engine.attachDistributed(group, { bucketMb: 0.25 });
for (let s = 0; s < steps; s++) {
  // freeze: the encoder frozen for the first step (the Reducer is rebuilt when it thaws).
  if (mode === 'freeze') model.freezeEncoder(s === 0);
  const { images, masks } = batchFor(s, env.rank * batch, batch);
  const x = Tensor.from(images, [batch, 3, 64, 64]);
  const y = Tensor.from(masks, [batch, 1, 64, 64]);
  const r = await engine.step(x, y);
  if (!r.stepped) throw new Error(`step ${s} did not step`);
  x.dispose();
  y.dispose();
}
if (env.rank === 0) {
  const params = {};
  for (const [name, t] of await model.stateDict()) {
    if (name.endsWith('running_mean') || name.endsWith('running_var') || name.endsWith('num_batches_tracked')) continue;
    params[name] = Array.from(await t.data('float32'));
    t.dispose();
  }
  writeFileSync(out, JSON.stringify(params));
}
engine.dispose();
await group.barrier();
group.destroy();
