/** `pneumo-native models`: the model zoo registry (backbones, encoders, strides, parameters). */
import type { CommandModule } from 'yargs';
import { Model } from '../../models/model.js';
import { architecture, registry } from '../../models/registry.js';
import { emitResult, formatTable, jsonOption } from '../output.js';
import type { JsonOption } from '../output.js';

interface ModelsArgs extends JsonOption {
  count: boolean;
}

interface BackboneRow {
  name: string;
  architecture: string;
  encoder: string;
  source: string;
  channels: number[];
  strides: number[];
  inputDivisor: number;
  encoderParameters: number;
  /** The whole model's parameters (with --count). */
  parameters: number | null;
  note: string | null;
}

async function collect(count: boolean): Promise<BackboneRow[]> {
  const rows: BackboneRow[] = [];
  for (const b of registry().backbones.values()) {
    const enc = registry().encoders.get(b.encoder)!;
    let parameters: number | null = null;
    if (count) {
      const model = await Model.create({ backbone: b.name });
      parameters = model.parameterCount().total;
      model.dispose();
    }
    rows.push({
      name: b.name,
      architecture: b.architecture,
      encoder: b.encoder,
      source: enc.source,
      channels: enc.channels,
      strides: b.architecture === 'deeplabv3' ? [2, 4, 8, 16, 16] : enc.strides,
      inputDivisor: architecture(b.architecture).divisor,
      encoderParameters: enc.parameters,
      parameters,
      note: b.note ?? null,
    });
  }
  return rows;
}

function render(rows: BackboneRow[]): string {
  const m = (n: number) => `${(n / 1e6).toFixed(1)}M`;
  const table = [
    ['backbone', 'architecture', 'encoder', 'channels', 'strides', 'input', 'encoder params', 'params', 'note'],
    ...rows.map((r) => [
      r.name,
      r.architecture,
      r.encoder,
      r.channels.join('/'),
      r.strides.join('/'),
      `x${r.inputDivisor}`,
      m(r.encoderParameters),
      r.parameters === null ? '-' : m(r.parameters),
      r.note ?? '',
    ]),
  ];
  return formatTable(table);
}

export const modelsCommand: CommandModule<object, ModelsArgs> = {
  command: 'models',
  describe: 'List the model zoo: backbone names, encoders, feature channels and strides, parameter counts',
  builder: (y) =>
    y.options({
      ...jsonOption,
      count: { type: 'boolean', default: false, describe: 'Build every model natively and count its parameters' },
    }),
  handler: async (argv) => {
    emitResult(argv, await collect(argv.count), render);
  },
};
