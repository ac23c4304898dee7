/**
 * `pneumo-native pseudo-label`: the second place's pseudo-labels. Confident predictions on
 * unlabelled images (a map file from `infer` on a prepared folder's test images) join the training
 * data with their predicted masks, in the always-train fold of a new folds file (never validated).
 */
import type { CommandModule } from 'yargs';
import { pseudoLabel } from '../../inference/pseudo.js';
import type { PseudoLabelResult } from '../../inference/pseudo.js';
import { CliError, emitResult, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

interface PseudoArgs extends JsonOption {
  maps: string;
  prepared: string;
  folds: string;
  out: string;
  confidence: number;
  threshold: number;
  'min-area': number;
  'area-size': number;
}

export const pseudoLabelCommand: CommandModule<object, PseudoArgs> = {
  command: 'pseudo-label',
  describe: 'Add confident predictions on unlabelled images to the training data (always-train fold of a new folds file)',
  builder: (y) =>
    y.options({
      maps: { type: 'string', demandOption: true, describe: "Predictions on the prepared folder's test images (.pnm from infer)" },
      prepared: { type: 'string', demandOption: true, describe: 'The `prepare` folder: test/<id>.png is copied to train/, the pseudo mask written to mask/' },
      folds: { type: 'string', demandOption: true, describe: 'The folds file to extend (not changed)' },
      out: { type: 'string', demandOption: true, describe: 'The new folds file: the old rows plus the added images in the always-train fold' },
      confidence: { type: 'number', default: 0.9, describe: 'A positive needs a highest probability >= this; an empty one <= 1 - this; others are left out' },
      threshold: { type: 'number', default: 0.5, describe: 'Pixel threshold of the pseudo mask' },
      'min-area': { type: 'number', default: 0, describe: 'Smallest pseudo mask of a positive, pixels at --area-size' },
      'area-size': { type: 'number', default: 1024, describe: 'The side areas are counted at' },
      ...jsonOption,
    }),
  handler: async (argv) => {
    let result: PseudoLabelResult;
    try {
      result = await pseudoLabel(argv.maps, argv.prepared, argv.folds, argv.out, { confidence: argv.confidence, threshold: argv.threshold, minArea: argv['min-area'], areaSize: argv['area-size'] });
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    emitResult(argv, result, (r) => `Added ${r.positives.length + r.empties.length} of ${r.considered} images (${r.positives.length} positive, ${r.empties.length} empty; ${r.uncertain} left out as uncertain) to ${r.foldsOut}`);
  },
};
