/** `pneumo-native dicom-info`: metadata of DICOM files and directories, going on past bad files. */
import { stat } from 'node:fs/promises';
import type { CommandModule } from 'yargs';
import { type DicomHeader, DicomError, listDicomFiles, read, readHeader } from '../../data/dicom.js';
import { CliError, emitResult, formatTable, jsonOption, logLine } from '../output.js';
import type { JsonOption } from '../output.js';

interface DicomInfoArgs extends JsonOption {
  paths: string[];
  decode: boolean;
}

/** One file's line of the report. */
interface FileInfo extends DicomHeader {
  file: string;
}

interface DicomInfoReport {
  files: FileInfo[];
  failures: { file: string; reason: string }[];
}

const ageText = (age: number | undefined) => (age === undefined ? '-' : Number.isInteger(age) ? String(age) : age.toFixed(2));

function render(r: DicomInfoReport): string {
  const rows: (string | number)[][] = [['id', 'size', 'spacing mm', 'view', 'sex', 'age', 'frames', 'photometric', 'bits', 'syntax']];
  for (const f of r.files) {
    rows.push([
      f.id,
      `${f.columns}x${f.rows}`,
      f.pixelSpacing ? f.pixelSpacing.map((v) => v.toFixed(3)).join('x') : '-',
      f.viewPosition ?? '-',
      f.sex ?? '-',
      ageText(f.age),
      f.frames,
      f.photometric,
      `${f.bitsStored}/${f.bitsAllocated}`,
      f.transferSyntax.name,
    ]);
  }
  const lines = r.files.length > 0 ? [formatTable(rows)] : [];
  lines.push(`${r.files.length} file(s) read, ${r.failures.length} failed`);
  for (const f of r.failures) lines.push(`  ${f.file}: ${f.reason}`);
  return lines.join('\n');
}

/** Expands directories (recursively, *.dcm) and keeps files as given; a missing path is a failure. */
async function expand(paths: string[], failures: DicomInfoReport['failures']): Promise<string[]> {
  const files: string[] = [];
  for (const path of paths) {
    const info = await stat(path).catch((err: Error) => err);
    if (info instanceof Error) failures.push({ file: path, reason: `cannot read: ${info.message}` });
    else if (info.isDirectory()) files.push(...(await listDicomFiles(path)));
    else files.push(path);
  }
  return files;
}

export const dicomInfoCommand: CommandModule<object, DicomInfoArgs> = {
  command: 'dicom-info <paths..>',
  describe: 'Show id, size, spacing, view, sex, age and transfer syntax of DICOM files (directories are searched for *.dcm)',
  builder: (y) =>
    y
      .positional('paths', { type: 'string', array: true, demandOption: true, describe: 'DICOM files or directories' })
      .options({
        decode: { type: 'boolean', default: false, describe: 'Also decode the pixels, to check that every file can be read in full' },
        ...jsonOption,
      }),
  handler: async (argv) => {
    const report: DicomInfoReport = { files: [], failures: [] };
    const files = await expand(argv.paths, report.failures);
    if (files.length === 0 && report.failures.length === 0) throw new CliError(`no .dcm files found under ${argv.paths.join(', ')}`);
    for (const file of files) {
      try {
        let header: DicomHeader;
        if (argv.decode) {
          const { pixels: _pixels, width: _width, height: _height, ...rest } = await read(file);
          header = rest;
        } else header = await readHeader(file);
        report.files.push({ file, ...header });
      } catch (err) {
        if (!(err instanceof DicomError)) throw err;
        report.failures.push({ file, reason: err.reason });
      }
    }
    emitResult(argv, report, render);
    if (report.failures.length > 0) {
      logLine(`pneumo-native: ${report.failures.length} path(s) could not be read (listed above)`);
      process.exitCode = 1;
    }
  },
};
