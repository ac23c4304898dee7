/**
 * `pneumo-native weights list|fetch|verify [encoder...]`: the pretrained encoder weights the
 * registry knows (the seeds' ImageNet files), what the cache holds, downloads and checksums.
 */
import type { CommandModule } from 'yargs';
import { registry } from '../../models/registry.js';
import { fetchPretrained, listPretrained, verifyPretrained, weightsCacheDir, weightsSource, pretrainedEntry } from '../../models/weights.js';
import type { FetchedWeights, PretrainedStatus, VerifyResult } from '../../models/weights.js';
import { CliError, emitResult, formatTable, jsonOption, logLine } from '../output.js';
import type { JsonOption } from '../output.js';

interface WeightsArgs extends JsonOption {
  action: 'list' | 'fetch' | 'verify';
  encoders: string[];
  kind: string;
}

function checkEncoders(names: string[], kind: string): string[] {
  const all = [...registry().encoders.values()].filter((e) => e.pretrained.has(kind)).map((e) => e.name);
  for (const name of names) {
    if (!all.includes(name)) throw new CliError(`Unknown encoder ${JSON.stringify(name)} (encoders with ${kind} weights: ${all.join(', ')})`, 2);
  }
  return names.length ? names : all;
}

function mb(bytes: number | null): string {
  return bytes === null ? '-' : `${(bytes / 1e6).toFixed(1)} MB`;
}

function renderList(result: { cacheDir: string; mirror: string | null; weights: PretrainedStatus[] }): string {
  const rows = result.weights.map((w) => [w.encoder, w.kind, w.file, w.cached ? mb(w.bytes) : w.partialBytes !== null ? `partial ${mb(w.partialBytes)}` : 'not cached', w.checksum, w.from]);
  return [
    `cache: ${result.cacheDir}${result.mirror ? `\nmirror: ${result.mirror}` : ''}`,
    formatTable([['encoder', 'weights', 'file', 'cache', 'checksum', 'from'], ...rows]),
  ].join('\n');
}

export const weightsCommand: CommandModule<object, WeightsArgs> = {
  command: 'weights <action> [encoders..]',
  describe: 'Pretrained encoder weights (ImageNet, as the seeds used): list the cache, fetch, verify checksums',
  builder: (y) =>
    y
      .positional('action', { choices: ['list', 'fetch', 'verify'] as const, describe: 'list: what the registry knows and the cache holds; fetch: download into the cache; verify: re-hash cached files' })
      .positional('encoders', { type: 'string', array: true, default: [], describe: 'Encoder names (default: every encoder with such weights)' })
      .options({
        ...jsonOption,
        kind: { type: 'string', default: 'imagenet', describe: 'Which pretrained weights of the registry' },
      })
      .epilog(
        'Cache: $PNEUMO_CACHE_DIR/weights (default ~/.cache/pneumo-native/weights). PNEUMO_WEIGHTS_MIRROR=URL|DIR fetches <mirror>/<file name> instead of the upstream address. A file copied into the cache is verified on first use.',
      ) as never,
  handler: async (argv) => {
    const encoders = checkEncoders(argv.encoders ?? [], argv.kind);
    if (argv.action === 'list') {
      const weights = await listPretrained(encoders, weightsCacheDir());
      emitResult(argv, { cacheDir: weightsCacheDir(), mirror: process.env.PNEUMO_WEIGHTS_MIRROR || null, weights }, renderList);
      return;
    }
    if (argv.action === 'fetch') {
      const fetched: FetchedWeights[] = [];
      for (const name of encoders) {
        const entry = pretrainedEntry(name, argv.kind);
        logLine(`${name}: ${entry.file} from ${weightsSource(entry)}`);
        fetched.push(await fetchPretrained(name, argv.kind));
      }
      emitResult(argv, { cacheDir: weightsCacheDir(), fetched }, (r) =>
        formatTable([['encoder', 'file', 'status', 'sha256'], ...r.fetched.map((f) => [f.encoder, f.path, f.downloaded ? 'downloaded' : 'cached', f.sha256])]),
      );
      return;
    }
    const results: VerifyResult[] = [];
    for (const name of encoders) results.push(await verifyPretrained(name, argv.kind));
    emitResult(argv, { cacheDir: weightsCacheDir(), results }, (r) =>
      formatTable([['encoder', 'file', 'status', 'sha256', 'expected'], ...r.results.map((v) => [v.encoder, v.path, v.status, v.sha256 ?? '-', v.expected])]),
    );
    const bad = results.filter((r) => r.status === 'mismatch');
    if (bad.length) throw new CliError(`Checksum mismatch: ${bad.map((b) => `${b.path} (expected ${b.expected}, found ${b.sha256})`).join('; ')}; delete the file(s) and fetch again`);
    if (argv.encoders.length && results.some((r) => r.status === 'missing')) {
      throw new CliError(`Not in the cache: ${results.filter((r) => r.status === 'missing').map((r) => r.path).join(', ')} (run pneumo-native weights fetch)`);
    }
  },
};
