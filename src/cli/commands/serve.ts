/** `pneumo-native serve`: the HTTP segmentation server (src/serve/server.ts) over one model. */
import type { CommandModule } from 'yargs';
import { Segmenter } from '../../serve/segmenter.js';
import { SegmentServer } from '../../serve/server.js';
import type { Triplet } from '../../scoring/triplet.js';
import { CliError, jsonOption, logLine } from '../output.js';
import type { JsonOption } from '../output.js';

interface ServeArgs extends JsonOption {
  model: string;
  port: number;
  host: string;
  device: string;
  size: number;
  'max-size': number | undefined;
  'max-request-mb': number | undefined;
  'accept-damaged-jpeg': boolean;
  tta: boolean;
  triplet: string | undefined;
  'max-batch': number;
  'max-wait-ms': number;
  'max-queue': number;
  'max-body-mb': number;
  'body-timeout-ms': number;
  'timeout-ms': number;
  'drain-timeout-ms': number;
}

function parseTriplet(text: string): Triplet {
  const parts = text.split(',').map(Number);
  if (parts.length !== 3 || parts.some((p) => !Number.isFinite(p))) throw new CliError(`--triplet must be top,area,bottom (got ${text})`, 2);
  return parts as Triplet;
}

export const serveCommand: CommandModule<object, ServeArgs> = {
  command: 'serve',
  describe: 'Serve a model over HTTP: POST /v1/segment (DICOM/PNG/JPEG -> RLE JSON or PNG mask), GET /healthz, GET /metrics',
  builder: (y) =>
    y
      .options({
        model: { type: 'string', demandOption: true, describe: 'Checkpoint or TorchScript export to serve' },
        port: { type: 'number', default: 8080, describe: 'TCP port (0 picks a free one)' },
        host: { type: 'string', default: '127.0.0.1', describe: 'Address to listen on (0.0.0.0 for every interface)' },
        device: { type: 'string', default: 'cpu', describe: 'cpu, cuda or cuda:N' },
        size: { type: 'number', default: 512, describe: 'Inference size (square, a multiple of the encoder divisor)' },
        'max-size': { type: 'number', describe: 'Largest ?size= a request may ask for (default: the size the model was trained at, and at least --size); larger get 400 SIZE_TOO_LARGE' },
        'max-request-mb': { type: 'number', describe: 'Working-memory budget of one request in MiB, estimated from its size, TTA and the model (default 2048, or more when --max-size with TTA needs it); over it: 413 OVER_MEMORY_BUDGET' },
        'accept-damaged-jpeg': { type: 'boolean', default: false, describe: 'Segment truncated or corrupt JPEG data (missing rows grey) instead of answering 400' },
        tta: { type: 'boolean', default: false, describe: 'Horizontal-flip TTA by default (?tta=0/1 per request)' },
        triplet: { type: 'string', describe: 'Default top,area,bottom triplet (default 0.75,2000,0.3)' },
        'max-batch': { type: 'number', default: 8, describe: 'Most requests in one forward pass' },
        'max-wait-ms': { type: 'number', default: 5, describe: 'Longest a request waits for companions before its batch runs' },
        'max-queue': { type: 'number', default: 64, describe: 'Most requests waiting; more get 503' },
        'max-body-mb': { type: 'number', default: 32, describe: 'Largest request body in MiB; larger get 413' },
        'body-timeout-ms': { type: 'number', default: 10_000, describe: 'Time to receive a body; then 408' },
        'timeout-ms': { type: 'number', default: 30_000, describe: 'Time from the body to the result; then 503' },
        'drain-timeout-ms': { type: 'number', default: 30_000, describe: 'On SIGTERM/SIGINT, longest wait for requests in flight' },
        ...jsonOption,
      })
      .check((argv) => {
        const int = (name: keyof ServeArgs, min: number, max: number): void => {
          const v = argv[name] as number;
          if (!Number.isInteger(v) || v < min || v > max) throw new CliError(`--${name} must be an integer between ${min} and ${max} (got ${v})`, 2);
        };
        int('port', 0, 65535);
        int('size', 32, 8192);
        if (argv['max-size'] !== undefined) int('max-size', 32, 8192);
        if (argv['max-request-mb'] !== undefined && !(argv['max-request-mb'] > 0 && argv['max-request-mb'] <= 1 << 30)) throw new CliError(`--max-request-mb must be a positive number of MiB (got ${argv['max-request-mb']})`, 2);
        int('max-batch', 1, 1024);
        int('max-queue', 1, 1_000_000);
        int('body-timeout-ms', 1, 3_600_000);
        int('timeout-ms', 1, 3_600_000);
        int('drain-timeout-ms', 0, 3_600_000);
        if (!(argv['max-wait-ms'] >= 0 && argv['max-wait-ms'] <= 60_000)) throw new CliError(`--max-wait-ms must be between 0 and 60000 (got ${argv['max-wait-ms']})`, 2);
        if (!(argv['max-body-mb'] > 0 && argv['max-body-mb'] <= 2047)) throw new CliError(`--max-body-mb must be between 0 and 2047 (got ${argv['max-body-mb']})`, 2);
        if (argv.triplet !== undefined) parseTriplet(argv.triplet);
        return true;
      }),
  handler: async (argv) => {
    const segmenter = await Segmenter.load(argv.model, {
      device: argv.device,
      size: argv.size,
      ...(argv['max-size'] === undefined ? {} : { maxSize: argv['max-size'] }),
      ...(argv['max-request-mb'] === undefined ? {} : { maxRequestBytes: Math.floor(argv['max-request-mb'] * 1024 * 1024) }),
      acceptDamagedJpeg: argv['accept-damaged-jpeg'],
      tta: argv.tta,
      maxBatchSize: argv['max-batch'],
      maxWaitMs: argv['max-wait-ms'],
      maxQueue: argv['max-queue'],
      ...(argv.triplet === undefined ? {} : { triplet: parseTriplet(argv.triplet) }),
    });
    const server = new SegmentServer(segmenter, {
      maxBodyBytes: Math.floor(argv['max-body-mb'] * 1024 * 1024),
      bodyTimeoutMs: argv['body-timeout-ms'],
      requestTimeoutMs: argv['timeout-ms'],
      log: logLine,
    });
    let address;
    try {
      address = await server.listen(argv.port, argv.host);
    } catch (err) {
      segmenter.dispose();
      throw new CliError(`cannot listen on ${argv.host}:${argv.port}: ${(err as Error).message}`);
    }
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `http://${host}:${address.port}`;
    const limits = segmenter.options;
    logLine(
      `pneumo-native serve: ${segmenter.describe()} at ${argv.size}px on ${url} (POST /v1/segment, GET /healthz, GET /metrics); ` +
        `?size= up to ${limits.maxSize}, ${(limits.maxRequestBytes / 1024 ** 2).toFixed(0)} MiB of working memory per request`,
    );
    if (argv.json) {
      process.stdout.write(`${JSON.stringify({ url, port: address.port, model: argv.model, size: argv.size, maxSize: limits.maxSize, maxRequestBytes: limits.maxRequestBytes, tta: argv.tta })}\n`);
    }
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = (signal: NodeJS.Signals): void => {
        if (stopping) return;
        stopping = true;
        logLine(`pneumo-native serve: ${signal}: draining ${server.inFlight} request(s) in flight`);
        server.drain(argv['drain-timeout-ms']).then(
          () => {
            logLine('pneumo-native serve: drained, exiting');
            resolve();
          },
          (err: unknown) => {
            logLine(`pneumo-native serve: drain failed: ${(err as Error).message}`);
            resolve();
          },
        );
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
  },
};
