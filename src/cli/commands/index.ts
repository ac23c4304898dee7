/** Every CLI command, in the order `--help` lists them. Add new commands here. */
import type { CommandModule } from 'yargs';
import { infoCommand } from './info.js';
import { demoCommand } from './demo.js';
import { checkCommand } from './check.js';
import { foldsCommand } from './folds.js';
import { scoreCommand } from './score.js';
import { synthCommand } from './synth.js';
import { prepareCommand } from './prepare.js';
import { storeCommand } from './store.js';
import { dicomInfoCommand } from './dicom-info.js';
import { augmentPreviewCommand } from './augment-preview.js';
import { modelsCommand } from './models.js';
import { weightsCommand } from './weights.js';
import { thresholdsCommand } from './thresholds.js';
import { submitCommand } from './submit.js';
import { blendCommand } from './blend.js';
import { inferCommand } from './infer.js';
import { swaCommand } from './swa.js';
import { stackCommand } from './stack.js';
import { serveCommand } from './serve.js';
import { trainCommand } from './train.js';
import { buildCommand } from './build.js';
import { pipelineCommand } from './pipeline.js';
import { pseudoLabelCommand } from './pseudo-label.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [infoCommand, demoCommand, checkCommand, foldsCommand, scoreCommand, synthCommand, prepareCommand, storeCommand, dicomInfoCommand, augmentPreviewCommand, modelsCommand, weightsCommand, inferCommand, thresholdsCommand, blendCommand, swaCommand, stackCommand, submitCommand, trainCommand, pseudoLabelCommand, pipelineCommand, serveCommand, buildCommand];
