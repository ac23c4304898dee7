import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LabelFileError,
  STAGE1_TRAIN_FORMAT,
  SubmissionWriter,
  hasPneumothorax,
  iterateRows,
  readSampleSubmission,
  readTrainLabels,
  writeSubmission,
} from '../../src/data/labels.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pn-labels-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

async function errorOf(promise: Promise<unknown>): Promise<LabelFileError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(LabelFileError);
    return err as LabelFileError;
  }
  throw new Error('expected an error');
}

describe('labels: reading train labels', () => {
  it('reads the stage-1 layout (leading spaces, several rows per image, -1 rows)', async () => {
    const path = await file('train-rle.csv', 'ImageId, EncodedPixels\na, -1\nb, 5 2 2 2\nc, 1 3\nb, 20 4\n');
    const labels = await readTrainLabels(path);
    expect([...labels.keys()]).toEqual(['a', 'b', 'c']);
    expect(labels.get('a')).toEqual([]);
    expect(labels.get('b')).toEqual(['5 2 2 2', '20 4']);
    expect(labels.get('c')).toEqual(['1 3']);
  });

  it('reads the stage-2 layout with CRLF line ends, a BOM, blank lines and quoted fields', async () => {
    const path = await file('stage_2_train.csv', '\uFEFFImageId,EncodedPixels\r\n"a",-1\r\n\r\nb,"5 2"\r\n');
    const labels = await readTrainLabels(path);
    expect(labels).toEqual(new Map([['a', []], ['b', ['5 2']]]));
  });

  it('accepts the columns in another order and ignores extra columns', async () => {
    const path = await file('swapped.csv', 'EncodedPixels,Extra,ImageId\n5 2,x,a\n');
    expect(await readTrainLabels(path)).toEqual(new Map([['a', ['5 2']]]));
  });

  it('streams rows with line numbers', async () => {
    const path = await file('rows.csv', 'ImageId, EncodedPixels\na, -1\n\nb, 1 2\n');
    const rows = [];
    for await (const row of iterateRows(path)) rows.push(row);
    expect(rows).toEqual([
      { id: 'a', rle: '-1', line: 2 },
      { id: 'b', rle: '1 2', line: 4 },
    ]);
  });

  it('streams a 20,000-row file', async () => {
    const lines = ['ImageId, EncodedPixels'];
    for (let i = 0; i < 20000; i++) lines.push(`1.2.276.0.7230010.3.1.4.8323329.${i}.1517875160.${i}, ${i % 5 === 0 ? `${i} 10 990 12` : '-1'}`);
    const path = await file('big.csv', `${lines.join('\n')}\n`);
    const labels = await readTrainLabels(path, { size: 1024 });
    expect(labels.size).toBe(20000);
    expect([...labels.values()].filter(hasPneumothorax).length).toBe(4000);
  });

  it('validates RLE while reading when given a size, naming the file and line', async () => {
    const path = await file('badrle.csv', 'ImageId,EncodedPixels\na,-1\nb,5 2 2\n');
    const err = await errorOf(readTrainLabels(path, { size: 4 }));
    expect(err.message).toBe(`${path}:3: RLE of image b: odd number of values (3); expected "gap length" pairs`);
    expect(err.line).toBe(3);
  });
});

describe('labels: bad files', () => {
  it('names the file and line for a bad header', async () => {
    const path = await file('badheader.csv', 'Id,Pixels\na,-1\n');
    const err = await errorOf(readTrainLabels(path));
    expect(err.message).toMatch(/badheader\.csv:1: bad header "Id,Pixels": missing column ImageId and EncodedPixels/);
  });

  it('names the missing column', async () => {
    const path = await file('norle.csv', 'ImageId\na\n');
    expect((await errorOf(readTrainLabels(path))).message).toMatch(/norle\.csv:1: bad header "ImageId": missing column EncodedPixels/);
  });

  it('names the line of an empty id and of a short row', async () => {
    const empty = await file('emptyid.csv', 'ImageId,EncodedPixels\na,-1\n ,1 2\n');
    expect((await errorOf(readTrainLabels(empty))).message).toMatch(/emptyid\.csv:3: empty ImageId/);
    const short = await file('short.csv', 'ImageId,EncodedPixels\na\n');
    expect((await errorOf(readTrainLabels(short))).message).toMatch(/short\.csv:2: expected 2 columns but found 1/);
  });

  it('reports empty and missing files', async () => {
    const empty = await file('empty.csv', '');
    expect((await errorOf(readTrainLabels(empty))).message).toMatch(/empty\.csv: empty file/);
    expect((await errorOf(readTrainLabels(join(dir, 'nope.csv')))).message).toMatch(/nope\.csv: no such file/);
  });
});

describe('labels: sample submissions', () => {
  it('reads ids in order, with or without the EncodedPixels column', async () => {
    expect(await readSampleSubmission(await file('s1.csv', 'ImageId,EncodedPixels\nz,-1\na,-1\n'))).toEqual(['z', 'a']);
    expect(await readSampleSubmission(await file('s2.csv', 'ImageId\nz\na\n'))).toEqual(['z', 'a']);
  });

  it('rejects a repeated id', async () => {
    const path = await file('dup.csv', 'ImageId,EncodedPixels\na,-1\nb,-1\na,-1\n');
    expect((await errorOf(readSampleSubmission(path))).message).toMatch(/dup\.csv:4: ImageId a repeated \(first on line 2\)/);
  });
});

describe('labels: writing submissions', () => {
  it('writes the header and rows, -1 for empty, from an async iterable, atomically', async () => {
    const path = join(dir, 'sub.csv');
    async function* rows() {
      yield { id: 'a', rle: '' };
      yield { id: 'b', rle: '5 2 2 2' };
      yield { id: 'c', rle: ' -1' };
    }
    expect(await writeSubmission(path, rows())).toBe(3);
    expect(await readFile(path, 'utf8')).toBe('ImageId,EncodedPixels\na,-1\nb,5 2 2 2\nc,-1\n');
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp') || f.startsWith('.pneumo-tmp-'))).toEqual([]);
  });

  it('writes the stage-1 train layout with repeated ids, readable back', async () => {
    const path = join(dir, 'train-out.csv');
    await writeSubmission(path, [{ id: 'a', rle: '1 2' }, { id: 'a', rle: '9 1' }, { id: 'b', rle: '-1' }], STAGE1_TRAIN_FORMAT);
    expect(await readFile(path, 'utf8')).toBe('ImageId, EncodedPixels\na, 1 2\na, 9 1\nb, -1\n');
    expect(await readTrainLabels(path)).toEqual(new Map([['a', ['1 2', '9 1']], ['b', []]]));
  });

  it('leaves the target untouched when a row is bad', async () => {
    const path = join(dir, 'keep.csv');
    await writeFile(path, 'old');
    await expect(writeSubmission(path, [{ id: 'a', rle: '1 2' }, { id: 'a', rle: '3 4' }])).rejects.toThrow(/keep\.csv: ImageId a written twice/);
    await expect(writeSubmission(path, [{ id: 'a,b', rle: '1 2' }])).rejects.toThrow(/Expected a non-empty id without commas/);
    await expect(writeSubmission(path, [{ id: 'a', rle: '1 x' }])).rejects.toThrow(/Expected RLE text .* for EncodedPixels of a but received "1 x"/);
    expect(await readFile(path, 'utf8')).toBe('old');
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp') || f.startsWith('.pneumo-tmp-'))).toEqual([]);
  });

  it('aborts without leaving a file', async () => {
    const writer = await SubmissionWriter.open(join(dir, 'aborted.csv'));
    await writer.write('a', '-1');
    await writer.abort();
    expect((await readdir(dir)).filter((f) => f.includes('aborted'))).toEqual([]);
  });
});

describe('labels: exist_labels', () => {
  it('is true only when some row holds a region', () => {
    expect(hasPneumothorax([])).toBe(false);
    expect(hasPneumothorax(['-1', ' -1'])).toBe(false);
    expect(hasPneumothorax(['-1', '5 2'])).toBe(true);
  });
});
