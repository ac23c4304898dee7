/** `pneumo-native blend`: weighted blend of map files, resized to a common size (SPEC section 4). */
import type { CommandModule } from 'yargs';
import { blendMaps, parseWeighted } from '../../inference/blend.js';
import type { BlendResult } from '../../inference/blend.js';
import type { MapDType } from '../../inference/maps.js';
import { ProgressBar } from '../progress.js';
import { CliError, emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

interface BlendArgs extends JsonOption {
  maps: string[];
  out: string;
  size?: number;
  dtype?: string;
  overwrite: boolean;
  quiet: boolean;
}

function render(r: BlendResult): string {
  return [
    `Wrote ${r.out}: ${r.images} ${r.size}x${r.size} ${r.dtype} maps (${r.blended} blended now${r.blended < r.images ? `, ${r.images - r.blended} already there` : ''})`,
    formatTable([['input', 'weight', 'size'], ...r.inputs.map((i) => [i.path, i.weight.toFixed(4), `${i.size[0]}x${i.size[1]}`])]),
  ].join('\n');
}

export const blendCommand: CommandModule<object, BlendArgs> = {
  command: 'blend',
  describe: 'Blend map files with weights (path:weight), resized bilinearly to a common size; resumable',
  builder: (y) =>
    y
      .options({
        maps: { type: 'string', array: true, demandOption: true, describe: 'Map files, each optionally with :weight (e.g. a.pnm:0.4); weights are normalised' },
        out: { type: 'string', demandOption: true, describe: 'Blended map file (.pnm); a partial one from an interrupted run resumes' },
        size: { type: 'number', describe: 'Output side (default: the largest input side)' },
        dtype: { type: 'string', choices: ['uint8', 'float16'], describe: "Output values (default: the first input's)" },
        overwrite: { type: 'boolean', default: false, describe: 'Replace an existing different output' },
        quiet: { type: 'boolean', default: false, describe: 'No progress on stderr' },
        ...jsonOption,
      })
      .check((argv) => {
        if (argv.size !== undefined && (!Number.isInteger(argv.size) || argv.size < 1)) throw new CliError(`--size must be a positive integer (got ${argv.size})`, 2);
        return true;
      }),
  handler: async (argv) => {
    const inputs = argv.maps.map(parseWeighted);
    for (const i of inputs) if (!(i.weight! >= 0)) throw new CliError(`--maps ${i.path}: the weight must be >= 0`, 2);
    const bar = new ProgressBar('blend', 0, { unit: 'maps', silent: argv.quiet });
    let result: BlendResult;
    try {
      result = await blendMaps(inputs, argv.out, { size: argv.size, dtype: argv.dtype as MapDType | undefined, overwrite: argv.overwrite, onProgress: (d, t) => bar.update(d, t) });
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    bar.finish();
    emitResult(argv, result, render);
  },
};
