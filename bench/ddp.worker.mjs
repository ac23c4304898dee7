// One process of the data-parallel bench (bench/ddp.bench.mjs): `steps` timed training steps of
// `backbone` at `size` px, batch `batch`, after 2 warm-up steps. With torchrun's variables in the
// environment it joins the c10d group (Gloo) and, with sync=1, averages gradients over it (c10d's
// Reducer); sync=0 trains the ranks independently (the process split without communication).
// Rank 0 (or the only process) prints { imagesPerSecond (all ranks), msPerStep, threads }.
//   argv: <backbone> <size> <batch> <steps> <sync 0|1>
import { Tensor, TrainEngine, distributed, getThreads, models } from '../dist/index.js';

const [backbone, sizeArg, batchArg, stepsArg, syncArg] = process.argv.slice(2);
const size = Number(sizeArg);
const batch = Number(batchArg);
const steps = Number(stepsArg);
const env = distributed.distributedEnv();
const group = env && env.worldSize > 1 ? await distributed.ProcessGroup.init({ ...env, backend: 'gloo', timeoutSeconds: 600 }) : null;
const world = group?.worldSize ?? 1;
const model = await models.Model.create({ backbone, seed: 1, device: 'cpu' });
const engine = TrainEngine.create(model, {
  optimizer: { algorithm: 'adam', lr: 1e-4, weightDecay: 5e-6 },
  loss: [{ kind: 'combo', weight: 1, options: { bceWeight: 3, diceWeight: 1, focalWeight: 4, perImageDice: false } }],
  gradClip: 0.1,
});
if (group && syncArg === '1') {
  await group.broadcastModel(model, 0);
  engine.attachDistributed(group);
}
const images = new Float32Array(batch * 3 * size * size).map((_, i) => Math.sin(i * 0.37 + (env?.rank ?? 0)));
const masks = new Float32Array(batch * size * size).map((_, i) => (Math.sin(i * 0.011) > 0.6 ? 1 : 0));
const x = Tensor.from(images, [batch, 3, size, size]);
const y = Tensor.from(masks, [batch, 1, size, size]);
for (let s = 0; s < 2; s++) await engine.step(x, y);
if (group) await group.barrier();
const t0 = performance.now();
for (let s = 0; s < steps; s++) await engine.step(x, y);
if (group) await group.barrier();
const seconds = (performance.now() - t0) / 1000;
if (!group || group.isMain) {
  process.stdout.write(`${JSON.stringify({ imagesPerSecond: (steps * batch * world) / seconds, msPerStep: (1000 * seconds) / steps, threads: getThreads() })}\n`);
}
x.dispose();
y.dispose();
engine.dispose();
group?.destroy();
