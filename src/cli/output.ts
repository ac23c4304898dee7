/**
 * Output conventions shared by every command: results go to stdout (one JSON object with
 * `--json`), progress and logs go to stderr so that stdout stays machine-readable.
 */

/** An error meant for the user: printed without a stack trace, with its own exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The options every result-printing command accepts. */
export interface JsonOption {
  json?: boolean;
}

/** yargs option definition for `--json`. */
export const jsonOption = {
  json: {
    type: 'boolean' as const,
    default: false,
    describe: 'Print one JSON object on stdout instead of text (progress still goes to stderr)',
  },
};

let resultSink: ((result: unknown) => void) | null = null;

/**
 * Runs `work` with command results captured instead of printed (the pipeline runs commands
 * in-process and keeps each one's result object); the sink is restored afterwards.
 */
export async function captureResults<T>(sink: (result: unknown) => void, work: () => Promise<T>): Promise<T> {
  const previous = resultSink;
  resultSink = sink;
  try {
    return await work();
  } finally {
    resultSink = previous;
  }
}

/** Prints a command's result: `render(result)` as text, or the object itself with `--json`. */
export function emitResult<T>(argv: JsonOption, result: T, render: (result: T) => string): void {
  if (resultSink) resultSink(JSON.parse(JSON.stringify(result)) as unknown);
  else if (argv.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else process.stdout.write(render(result).replace(/\n?$/, '\n'));
}

/** Writes a log line to stderr. */
export function logLine(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Turns anything thrown into a message and an exit code (2 for usage errors). */
export function describeError(err: unknown): { message: string; exitCode: number } {
  if (err instanceof CliError) return { message: err.message, exitCode: err.exitCode };
  if (err instanceof Error) {
    const debug = process.env.PNEUMO_DEBUG ? `\n${err.stack ?? ''}` : '';
    return { message: `${err.message}${debug}`, exitCode: 1 };
  }
  return { message: String(err), exitCode: 1 };
}

/** Formats rows as an aligned text table (first row is the header). */
export function formatTable(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map((c) => String(c)));
  const widths: number[] = [];
  for (const row of cells) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return cells.map((row) => row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}
