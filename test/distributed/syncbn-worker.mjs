// One rank of the SyncBatchNorm test (test/distributed/syncbn.test.ts), started with torchrun's
// environment: joins the c10d group and trains tiny_unet_r18 for STEPS steps three times, without
// broadcasting rank 0's buffers (each rank's running statistics are its own):
//   sync     SyncBatchNorm, each rank on its slice of each global batch of 2 x B;
//   plain    per-rank BatchNorm (DDP's default without SyncBatchNorm), the same slices;
//   replica  SyncBatchNorm, every rank on the whole global batch (the operator alone against
//            ordinary BatchNorm: the convolutions see the batch of the 1-process reference).
// Every rank writes its state dict (parameters and BatchNorm statistics) and the number of layers
// synchronised after each run to <out>.<mode>.<rank>.json; rank 0 saves the sync run's checkpoint
// to <out>.ckpt.
//   argv: <out prefix> <steps> <batch per rank>
import { writeFileSync } from 'node:fs';
import { Tensor, TrainEngine, distributed, models } from '../../dist/index.js';
import { SYNCBN_ENGINE_OPTIONS, batchFor } from './ddp-data.mjs';

const [out, stepsArg, batchArg] = process.argv.slice(2);
const steps = Number(stepsArg);
const batch = Number(batchArg);
const env = distributed.distributedEnv();
if (env === null) throw new Error('expected torchrun environment variables');
const group = await distributed.ProcessGroup.init({ ...env, backend: 'gloo', timeoutSeconds: 60 });
for (const mode of ['sync', 'plain', 'replica']) {
  const model = await models.Model.create({ backbone: 'tiny_unet_r18', seed: 100 + env.rank, device: 'cpu' });
  await group.broadcastModel(model, 0);
  const engine = TrainEngine.create(model, SYNCBN_ENGINE_OPTIONS);
  const layers = engine.attachDistributed(group, { bucketMb: 0.25, broadcastBuffers: false, syncBatchNorm: mode !== 'plain' });
  for (let s = 0; s < steps; s++) {
    const rows = mode === 'replica' ? 2 * batch : batch;
    const { images, masks } = batchFor(s, mode === 'replica' ? 0 : env.rank * batch, rows);
    const x = Tensor.from(images, [rows, 3, 64, 64]);
    const y = Tensor.from(masks, [rows, 1, 64, 64]);
    const r = await engine.step(x, y);
    if (!r.stepped) throw new Error(`step ${s} did not step`);
    x.dispose();
    y.dispose();
  }
  const state = { layers };
  for (const [name, t] of await model.stateDict()) {
    state[name] = Array.from(await t.data('float32'));
    t.dispose();
  }
  writeFileSync(`${out}.${mode}.${env.rank}.json`, JSON.stringify(state));
  if (mode === 'sync' && env.rank === 0) await model.save(`${out}.ckpt`);
  engine.dispose();
  model.dispose();
}
await group.barrier();
group.destroy();
