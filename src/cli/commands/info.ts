/** `pneumo-native info`: versions, LibTorch, CUDA/cuDNN, threads and BLAS. */
import type { CommandModule } from 'yargs';
import { runtimeReport } from '../../core/runtime.js';
import type { RuntimeReport } from '../../core/runtime.js';
import { emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

function render(r: RuntimeReport): string {
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  const rows: string[][] = [
    ['pneumo-native', r.packageVersion],
    ['addon', `${r.addonVersion} (N-API ${r.napiVersion})`],
    ['node', `${r.node} ${r.platform}`],
    ['LibTorch', `${r.libtorch.version}${r.libtorch.builtWithCuda ? ' (addon built with CUDA kernels)' : ' (CPU build)'}`],
    ['CUDA', r.cuda.available ? `available, ${r.cuda.deviceCount} device(s)` : 'not available'],
    ...r.cuda.devices.map((d) => [`  cuda:${d.index}`, `${d.name}, ${gib(d.totalMemory)}, sm ${d.computeCapability}, ${d.multiProcessors} SMs`]),
    ['cuDNN', r.cuda.cudnn.available ? `available (${r.cuda.cudnn.version})` : 'not available'],
    ['threads', `${r.threads.intraOp} intra-op, ${r.threads.interOp} inter-op (${r.threads.cores} cores${r.threads.openmp ? ', OpenMP' : ''})`],
    ['oneDNN', r.mkldnn ? 'yes' : 'no'],
    ['BLAS', r.blas.name],
    ['default device', r.defaultDevice],
    ['precision auto', [`cpu ${r.precision.autoCpu} (AMX ${r.precision.cpu.amx ? 'yes' : 'no'}, AVX512-BF16 ${r.precision.cpu.avx512bf16 ? 'yes' : 'no'})`, ...r.precision.autoCuda.map((p, i) => `cuda:${i} ${p}`)].join(', ')],
  ];
  return formatTable(rows);
}

export const infoCommand: CommandModule<object, JsonOption> = {
  command: 'info',
  describe: 'Show package, addon and LibTorch versions, CUDA/cuDNN devices, threads and BLAS',
  builder: (y) => y.options(jsonOption),
  handler: async (argv) => {
    emitResult(argv, await runtimeReport(), render);
  },
};
