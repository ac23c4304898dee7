/**
 * `torch.save` files read without Python: the zip format (PyTorch >= 1.6: `archive/data.pkl` plus
 * one stored record per storage) and the legacy format (PyTorch < 1.6, and many published
 * ImageNet weights: five pickles, then the raw storages one after another).
 *
 * The pickle is interpreted here by a small pickle machine that knows what `torch.save` writes
 * (`collections.OrderedDict` with its `_metadata`, `torch._utils._rebuild_tensor_v2`, parameters,
 * storages as persistent ids); every other object becomes an opaque value that is never called.
 * The result is an index of byte ranges in the file, and the native side reads the tensors
 * straight from those ranges (the same reader as safetensors), off the event loop.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { NativeNamedTensors, NativeSafetensorsEntry } from '../native/binding.js';
import { ensureRuntime } from '../core/runtime.js';

/** A `torch.save` file that cannot be read; the message names the file and the reason. */
export class TorchFileError extends Error {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = 'TorchFileError';
  }
}

/** One tensor of a `torch.save` file: where its elements lie in the file. */
export interface TorchFileEntry extends NativeSafetensorsEntry {
  /** Element strides when the tensor is a non-contiguous view (absent: contiguous). */
  strides?: number[];
}

export interface TorchFileIndex {
  /** "zip" (PyTorch >= 1.6) or "legacy" (the format before). */
  format: 'zip' | 'legacy';
  /** Tensors in file order, names as in the dict (after unnesting `state_dict` / `model`). */
  entries: TorchFileEntry[];
  /** Entries of the dict that are not tensors (skipped), by name. */
  skipped: string[];
}

// ---- the pickle machine -----------------------------------------------------------------------

class PyTuple {
  constructor(readonly items: unknown[]) {}
}
class PyDict {
  readonly map = new Map<unknown, unknown>();
}
class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}
/** Any object the machine does not model (never called, only carried). */
class PyOpaque {
  constructor(readonly type: string) {}
}
class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: string,
    readonly elementSize: number,
    readonly numel: number,
    /** Element offset into the root storage (legacy storage views). */
    readonly viewOffset: number,
  ) {}
}
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly strides: number[],
  ) {}
}
const MARK = Symbol('mark');

/** Storage classes torch.save names, to safetensors dtype codes and element sizes. */
const STORAGE_TYPES: Record<string, [string, number]> = {
  FloatStorage: ['F32', 4],
  DoubleStorage: ['F64', 8],
  HalfStorage: ['F16', 2],
  BFloat16Storage: ['BF16', 2],
  LongStorage: ['I64', 8],
  IntStorage: ['I32', 4],
  ShortStorage: ['I16', 2],
  CharStorage: ['I8', 1],
  ByteStorage: ['U8', 1],
  BoolStorage: ['BOOL', 1],
};

/** A byte source for the machine: the file from `start`, read in chunks as needed. */
class Reader {
  private buffer = Buffer.alloc(0);
  private bufferStart = 0;
  pos: number;

  constructor(
    private readonly fd: number,
    private readonly limit: number,
    start: number,
    private readonly fail: (reason: string) => never,
  ) {
    this.pos = start;
  }

  bytes(n: number): Buffer {
    if (n < 0 || this.pos + n > this.limit) this.fail(`the pickle ends early (needs ${n} bytes at offset ${this.pos} of ${this.limit}): the file is truncated or corrupted`);
    const rel = this.pos - this.bufferStart;
    if (rel < 0 || rel + n > this.buffer.length) {
      const size = Math.min(Math.max(n, 1 << 20), this.limit - this.pos);
      this.buffer = Buffer.alloc(size);
      readSync(this.fd, this.buffer, 0, size, this.pos);
      this.bufferStart = this.pos;
    }
    const start = this.pos - this.bufferStart;
    this.pos += n;
    return this.buffer.subarray(start, start + n);
  }

  byte(): number {
    return this.bytes(1)[0]!;
  }

  line(): string {
    const parts: number[] = [];
    for (;;) {
      const b = this.byte();
      if (b === 0x0a) return Buffer.from(parts).toString('latin1');
      parts.push(b);
      if (parts.length > 1 << 20) this.fail('a pickle text line is implausibly long: corrupted file');
    }
  }
}

interface MachineContext {
  fail: (reason: string) => never;
  persistent: (pid: unknown) => unknown;
}

function asInt(v: unknown, what: string, ctx: MachineContext): number {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  return ctx.fail(`expected an integer for ${what} but found ${describe(v)}`);
}

function intList(v: unknown, what: string, ctx: MachineContext): number[] {
  const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : ctx.fail(`expected a tuple for ${what} but found ${describe(v)}`);
  return items.map((x) => asInt(x, what, ctx));
}

function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof PyOpaque) return `an object of ${v.type}`;
  if (v instanceof PyGlobal) return v.qualified;
  if (v instanceof PyTuple) return 'a tuple';
  if (v instanceof PyDict) return 'a dict';
  if (v instanceof TensorRef) return 'a tensor';
  if (Array.isArray(v)) return 'a list';
  return typeof v;
}

function callGlobal(g: PyGlobal, args: unknown[], ctx: MachineContext): unknown {
  switch (g.qualified) {
    case 'collections.OrderedDict':
    case 'builtins.dict':
    case '__builtin__.dict':
      return new PyDict();
    case 'torch._utils._rebuild_tensor':
    case 'torch._utils._rebuild_tensor_v2': {
      const [storage, offset, size, stride] = args;
      if (!(storage instanceof StorageRef)) return ctx.fail(`${g.qualified} expects a storage but found ${describe(storage)}`);
      return new TensorRef(storage, asInt(offset, 'the storage offset', ctx), intList(size, 'a tensor size', ctx), intList(stride, 'a tensor stride', ctx));
    }
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state':
    case 'torch.nn.parameter.Parameter':
      return args[0];
    case 'torch.Size':
      return args[0];
    // LibTorch's pickler (torch::pickle_save, torch.jit) tags containers with their types.
    case 'torch.jit._pickle.restore_type_tag':
    case 'torch.jit._pickle.build_intlist':
    case 'torch.jit._pickle.build_tensorlist':
    case 'torch.jit._pickle.build_doublelist':
    case 'torch.jit._pickle.build_boollist':
      return args[0];
    case 'builtins.set':
    case '__builtin__.set':
    case 'builtins.frozenset':
    case 'builtins.list':
      return Array.isArray(args[0]) ? [...(args[0] as unknown[])] : [];
    case 'torch._utils._rebuild_qtensor':
    case 'torch._utils._rebuild_sparse_tensor':
    case 'torch._utils._rebuild_device_tensor_from_numpy':
      return new PyOpaque(`${g.qualified} (quantized, sparse or numpy tensors are not supported)`);
    default:
      return new PyOpaque(g.qualified);
  }
}

function storageGlobal(g: unknown): [string, number] | null {
  if (!(g instanceof PyGlobal)) return null;
  if (g.module !== 'torch' && g.module !== 'torch.cuda') return null;
  return STORAGE_TYPES[g.name] ?? null;
}

/** Runs one pickle from `reader.pos` to its STOP opcode. */
function unpickle(reader: Reader, ctx: MachineContext): unknown {
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  const popMark = (): unknown[] => {
    for (let i = stack.length - 1; i >= 0; i--) {
      if (stack[i] === MARK) {
        const items = stack.slice(i + 1);
        stack.length = i;
        return items;
      }
    }
    return ctx.fail('pickle MARK not found: corrupted file');
  };
  const pop = (): unknown => (stack.length ? stack.pop() : ctx.fail('pickle stack underflow: corrupted file'));
  const top = (): unknown => (stack.length ? stack[stack.length - 1] : ctx.fail('pickle stack underflow: corrupted file'));
  const setItems = (target: unknown, items: unknown[]): void => {
    if (!(target instanceof PyDict)) return; // items of an opaque object: ignored
    for (let i = 0; i + 1 < items.length; i += 2) target.map.set(keyOf(items[i]), items[i + 1]);
  };
  const keyOf = (k: unknown): unknown => (k instanceof PyTuple ? JSON.stringify(k.items.map(String)) : typeof k === 'bigint' ? Number(k) : k);
  const signedLE = (b: Buffer): bigint | number => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  for (;;) {
    const at = reader.pos;
    const op = reader.byte();
    switch (op) {
      case 0x80: reader.byte(); break; // PROTO
      case 0x95: reader.bytes(8); break; // FRAME
      case 0x2e: return pop(); // STOP
      case 0x28: stack.push(MARK); break;
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break;
      case 0x89: stack.push(false); break;
      case 0x4a: stack.push(reader.bytes(4).readInt32LE(0)); break; // BININT
      case 0x4b: stack.push(reader.byte()); break; // BININT1
      case 0x4d: stack.push(reader.bytes(2).readUInt16LE(0)); break; // BININT2
      case 0x8a: stack.push(signedLE(reader.bytes(reader.byte()))); break; // LONG1
      case 0x8b: stack.push(signedLE(reader.bytes(reader.bytes(4).readUInt32LE(0)))); break; // LONG4
      case 0x49: { // INT
        const s = reader.line();
        stack.push(s === '01' ? true : s === '00' ? false : Number.parseInt(s, 10));
        break;
      }
      case 0x4c: stack.push(Number.parseInt(reader.line().replace(/L$/, ''), 10)); break; // LONG
      case 0x46: stack.push(Number.parseFloat(reader.line())); break; // FLOAT
      case 0x47: stack.push(reader.bytes(8).readDoubleBE(0)); break; // BINFLOAT
      case 0x58: stack.push(reader.bytes(reader.bytes(4).readUInt32LE(0)).toString('utf8')); break; // BINUNICODE
      case 0x8c: stack.push(reader.bytes(reader.byte()).toString('utf8')); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(reader.bytes(Number(reader.bytes(8).readBigUInt64LE(0))).toString('utf8')); break; // BINUNICODE8
      case 0x56: stack.push(reader.line()); break; // UNICODE (raw-unicode-escape; ASCII names)
      case 0x54: stack.push(reader.bytes(reader.bytes(4).readInt32LE(0)).toString('latin1')); break; // BINSTRING (Python 2 str)
      case 0x55: stack.push(reader.bytes(reader.byte()).toString('latin1')); break; // SHORT_BINSTRING
      case 0x53: stack.push(reader.line().replace(/^(['"])(.*)\1$/, '$2')); break; // STRING
      case 0x42: stack.push(Buffer.from(reader.bytes(reader.bytes(4).readUInt32LE(0)))); break; // BINBYTES
      case 0x43: stack.push(Buffer.from(reader.bytes(reader.byte()))); break; // SHORT_BINBYTES
      case 0x8e: stack.push(Buffer.from(reader.bytes(Number(reader.bytes(8).readBigUInt64LE(0))))); break; // BINBYTES8
      case 0x96: stack.push(Buffer.from(reader.bytes(Number(reader.bytes(8).readBigUInt64LE(0))))); break; // BYTEARRAY8
      case 0x29: stack.push(new PyTuple([])); break; // EMPTY_TUPLE
      case 0x74: stack.push(new PyTuple(popMark())); break; // TUPLE
      case 0x85: stack.push(new PyTuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push(new PyTuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(new PyTuple([a, b, c])); break; } // TUPLE3
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x61: { const v = pop(); const l = top(); if (Array.isArray(l)) l.push(v); break; } // APPEND
      case 0x65: { const items = popMark(); const l = top(); if (Array.isArray(l)) l.push(...items); break; } // APPENDS
      case 0x7d: stack.push(new PyDict()); break; // EMPTY_DICT
      case 0x64: { const d = new PyDict(); setItems(d, popMark()); stack.push(d); break; } // DICT
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x8f: stack.push([]); break; // EMPTY_SET
      case 0x90: { const items = popMark(); const s = top(); if (Array.isArray(s)) s.push(...items); break; } // ADDITEMS
      case 0x91: stack.push(popMark()); break; // FROZENSET
      case 0x63: { const module = reader.line(); const name = reader.line(); stack.push(new PyGlobal(module, name)); break; } // GLOBAL
      case 0x93: { const name = pop(); const module = pop(); stack.push(new PyGlobal(String(module), String(name))); break; } // STACK_GLOBAL
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        const list = args instanceof PyTuple ? args.items : [];
        stack.push(fn instanceof PyGlobal ? callGlobal(fn, list, ctx) : new PyOpaque(`a call of ${describe(fn)}`));
        break;
      }
      case 0x81: { const args = pop(); const cls = pop(); stack.push(cls instanceof PyGlobal ? callGlobal(cls, args instanceof PyTuple ? args.items : [], ctx) : new PyOpaque('object')); break; } // NEWOBJ
      case 0x92: { pop(); const args = pop(); const cls = pop(); stack.push(cls instanceof PyGlobal ? callGlobal(cls, args instanceof PyTuple ? args.items : [], ctx) : new PyOpaque('object')); break; } // NEWOBJ_EX
      case 0x6f: { const items = popMark(); const cls = items.shift(); stack.push(cls instanceof PyGlobal ? callGlobal(cls, items, ctx) : new PyOpaque('object')); break; } // OBJ
      case 0x69: { const module = reader.line(); const name = reader.line(); stack.push(callGlobal(new PyGlobal(module, name), popMark(), ctx)); break; } // INST
      case 0x62: pop(); break; // BUILD: the state of an OrderedDict (_metadata) or of an opaque object
      case 0x70: memo.set(Number.parseInt(reader.line(), 10), top()); break; // PUT
      case 0x71: memo.set(reader.byte(), top()); break; // BINPUT
      case 0x72: memo.set(reader.bytes(4).readUInt32LE(0), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x67: case 0x68: case 0x6a: { // GET, BINGET, LONG_BINGET
        const key = op === 0x67 ? Number.parseInt(reader.line(), 10) : op === 0x68 ? reader.byte() : reader.bytes(4).readUInt32LE(0);
        if (!memo.has(key)) ctx.fail(`pickle memo ${key} read before it was written: corrupted file`);
        stack.push(memo.get(key));
        break;
      }
      case 0x51: stack.push(ctx.persistent(pop())); break; // BINPERSID
      case 0x50: stack.push(ctx.persistent(reader.line())); break; // PERSID
      default:
        return ctx.fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')} at offset ${at}: not a torch.save file, or corrupted`);
    }
  }
}

// ---- the state dict inside ----------------------------------------------------------------------

/** Unnests `{"state_dict": {...}}` / `{"model": {...}}` (as the native reader does) and lists the tensors. */
function tensorsOf(root: unknown, fail: (reason: string) => never): { tensors: [string, TensorRef][]; skipped: string[] } {
  let value = root;
  for (let depth = 0; depth < 2 && value instanceof PyDict; depth++) {
    const nested = ['state_dict', 'model'].map((k) => (value as PyDict).map.get(k)).find((v) => v instanceof PyDict);
    if (!nested) break;
    value = nested;
  }
  if (!(value instanceof PyDict)) fail(`does not hold a dict of tensors (found ${describe(value)})`);
  const tensors: [string, TensorRef][] = [];
  const skipped: string[] = [];
  for (const [k, v] of (value as PyDict).map) {
    if (typeof k === 'string' && v instanceof TensorRef) tensors.push([k, v]);
    else skipped.push(String(k));
  }
  return { tensors, skipped };
}

function isContiguous(shape: number[], strides: number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && strides[d] !== expected) return false;
    expected *= shape[d]!;
  }
  return true;
}

function entryFor(name: string, t: TensorRef, storageStart: number, storageBytes: number, fail: (reason: string) => never): TorchFileEntry {
  const { storage, shape, strides } = t;
  if (shape.length !== strides.length) fail(`tensor ${name} has ${shape.length} sizes but ${strides.length} strides`);
  const numel = shape.reduce((a, b) => a * b, 1);
  const contiguous = isContiguous(shape, strides);
  let span = numel;
  if (!contiguous && numel > 0) span = 1 + shape.reduce((s, size, d) => s + (size - 1) * strides[d]!, 0);
  const first = (storage.viewOffset + t.offset) * storage.elementSize;
  const bytes = (numel === 0 ? 0 : span) * storage.elementSize;
  if (first < 0 || first + bytes > storageBytes) {
    fail(`tensor ${name} (shape [${shape.join(', ')}]) reaches past the end of its storage ${storage.key} (${storageBytes} bytes): corrupted file`);
  }
  const entry: TorchFileEntry = { name, dtype: storage.dtype, shape, begin: storageStart + first, end: storageStart + first + bytes };
  if (!contiguous) entry.strides = strides;
  return entry;
}

// ---- zip -----------------------------------------------------------------------------------------

interface ZipRecord {
  name: string;
  /** Absolute offset of the (stored) data. */
  dataStart: number;
  size: number;
  /** Zip compression method (0: stored, as torch.save writes). */
  method: number;
}

function readZip(fd: number, fileSize: number, fail: (reason: string) => never): Map<string, ZipRecord> {
  // End of central directory: the last 22 bytes, or earlier with a comment (up to 64 KiB).
  const tailSize = Math.min(fileSize, 22 + 0xffff + 20);
  const tail = Buffer.alloc(tailSize);
  readSync(fd, tail, 0, tailSize, fileSize - tailSize);
  let eocd = -1;
  for (let i = tailSize - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail('is a zip file without its central directory: truncated or corrupted (download it again)');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (cdOffset === 0xffffffff || count === 0xffff || cdSize === 0xffffffff) {
    // ZIP64: the locator sits just before the end record.
    const loc = eocd - 20;
    if (loc < 0 || tail.readUInt32LE(loc) !== 0x07064b50) fail('has a ZIP64 end record without its locator: corrupted');
    const rec = Buffer.alloc(56);
    readSync(fd, rec, 0, 56, Number(tail.readBigUInt64LE(loc + 8)));
    if (rec.readUInt32LE(0) !== 0x06064b50) fail('has a damaged ZIP64 end record: corrupted');
    count = Number(rec.readBigUInt64LE(32));
    cdSize = Number(rec.readBigUInt64LE(40));
    cdOffset = Number(rec.readBigUInt64LE(48));
  }
  if (cdOffset + cdSize > fileSize) fail('has a central directory past the end of the file: truncated or corrupted');
  const cd = Buffer.alloc(cdSize);
  readSync(fd, cd, 0, cdSize, cdOffset);
  const records = new Map<string, ZipRecord>();
  let p = 0;
  for (let k = 0; k < count; k++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) fail('has a damaged zip central directory: corrupted');
    const method = cd.readUInt16LE(p + 10);
    let size = cd.readUInt32LE(p + 24);
    let uncompressed = cd.readUInt32LE(p + 20);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let local = cd.readUInt32LE(p + 42);
    const name = cd.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    // ZIP64 extra field: the 64-bit values replace the 0xffffffff ones, in this order.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = cd.readUInt16LE(e);
      const len = cd.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (uncompressed === 0xffffffff) { uncompressed = Number(cd.readBigUInt64LE(q)); q += 8; }
        if (size === 0xffffffff) { size = Number(cd.readBigUInt64LE(q)); q += 8; }
        if (local === 0xffffffff) { local = Number(cd.readBigUInt64LE(q)); q += 8; }
      }
      e += 4 + len;
    }
    const header = Buffer.alloc(30);
    readSync(fd, header, 0, 30, local);
    if (header.readUInt32LE(0) !== 0x04034b50) fail(`has a damaged zip record ${name}: corrupted`);
    const dataStart = local + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
    if (dataStart + size > fileSize) fail(`has the record ${name} past the end of the file: truncated`);
    records.set(name, { name, dataStart, size, method });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return records;
}

function indexZip(fd: number, fileSize: number, fail: (reason: string) => never): TorchFileIndex {
  const records = readZip(fd, fileSize, fail);
  const pkl = [...records.values()].find((r) => r.name.endsWith('/data.pkl') && r.name.split('/').length === 2);
  if (!pkl) fail('is a zip file without data.pkl: not a torch.save file');
  if ([...records.keys()].some((n) => n.endsWith('/constants.pkl') || n.includes('/code/'))) {
    fail('is a TorchScript archive (torch.jit.save), not a torch.save state dict: load it with Model.load, or use it as an encoder file');
  }
  const prefix = pkl!.name.slice(0, -'data.pkl'.length);
  const stored = (r: ZipRecord): ZipRecord =>
    r.method === 0 ? r : fail(`holds the compressed record ${r.name} (method ${r.method}); torch.save writes stored records: re-save it with torch.save`);
  stored(pkl!);
  const byteorder = records.get(`${prefix}byteorder`);
  if (byteorder) {
    const b = Buffer.alloc(Math.min(byteorder.size, 16));
    readSync(fd, b, 0, b.length, byteorder.dataStart);
    if (b.toString('latin1') !== 'little') fail(`was written on a ${b.toString('latin1')}-endian machine; only little-endian files are read`);
  }
  const storages = new Map<string, StorageRef>();
  const ctx: MachineContext = {
    fail,
    persistent: (pid) => {
      const t = pid instanceof PyTuple ? pid.items : [];
      if (t[0] !== 'storage') return fail(`has an unknown persistent id ${describe(pid)}: not a torch.save file`);
      const type = storageGlobal(t[1]);
      if (!type) return fail(`has storages of an unsupported type ${describe(t[1])}`);
      const key = String(t[2]);
      const ref = new StorageRef(key, type[0], type[1], asInt(t[4], 'a storage size', ctx), 0);
      storages.set(key, ref);
      return ref;
    },
  };
  const root = unpickle(new Reader(fd, pkl!.dataStart + pkl!.size, pkl!.dataStart, fail), ctx);
  const { tensors, skipped } = tensorsOf(root, fail);
  const entries = tensors.map(([name, t]) => {
    const record = records.get(`${prefix}data/${t.storage.key}`);
    if (!record) return fail(`misses the storage record data/${t.storage.key} of tensor ${name}: truncated or corrupted`);
    return entryFor(name, t, stored(record).dataStart, record.size, fail);
  });
  return { format: 'zip', entries, skipped };
}

// ---- legacy ----------------------------------------------------------------------------------------

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

function indexLegacy(fd: number, fileSize: number, fail: (reason: string) => never): TorchFileIndex {
  const reader = new Reader(fd, fileSize, 0, fail);
  const storages = new Map<string, StorageRef>();
  const ctx: MachineContext = {
    fail,
    persistent: (pid) => {
      const t = pid instanceof PyTuple ? pid.items : [];
      if (t[0] !== 'storage') return fail(`has an unknown persistent id ${describe(pid)}: not a torch.save file`);
      const type = storageGlobal(t[1]);
      if (!type) return fail(`has storages of an unsupported type ${describe(t[1])}`);
      const rootKey = String(t[2]);
      const numel = asInt(t[4], 'a storage size', ctx);
      // Storage views (PyTorch < 0.4): (view_key, offset, size) into the root storage.
      const view = t[5] instanceof PyTuple ? t[5].items : null;
      const offset = view ? asInt(view[1], 'a storage view offset', ctx) : 0;
      const ref = new StorageRef(rootKey, type[0], type[1], numel, offset);
      if (!storages.has(rootKey) || !view) storages.set(rootKey, view ? new StorageRef(rootKey, type[0], type[1], numel, 0) : ref);
      return ref;
    },
  };
  const magic = unpickle(reader, ctx);
  if (magic !== LEGACY_MAGIC) fail('is a pickle file but not a torch.save file (no torch.save magic number)');
  const protocol = unpickle(reader, ctx);
  if (protocol !== 1001) fail(`is a torch.save file of an unknown legacy protocol ${String(protocol)}`);
  const sysInfo = unpickle(reader, ctx);
  if (sysInfo instanceof PyDict && sysInfo.map.get('little_endian') === false) fail('was written on a big-endian machine; only little-endian files are read');
  const root = unpickle(reader, ctx);
  const keys = unpickle(reader, ctx);
  if (!Array.isArray(keys)) fail('has no storage key list after its pickle: truncated or corrupted');
  // The storages follow, in the order of the key list: an 8-byte element count, then the data.
  const located = new Map<string, [number, number]>();
  let pos = reader.pos;
  for (const key of keys as unknown[]) {
    const ref = storages.get(String(key));
    if (!ref) fail(`lists storage ${String(key)} that no tensor uses: corrupted`);
    if (pos + 8 > fileSize) fail(`ends before storage ${String(key)}: truncated (download it again)`);
    const head = Buffer.alloc(8);
    readSync(fd, head, 0, 8, pos);
    const numel = Number(head.readBigInt64LE(0));
    const bytes = numel * ref.elementSize;
    if (numel < 0 || pos + 8 + bytes > fileSize) fail(`ends inside storage ${String(key)} (${bytes} bytes at offset ${pos + 8} of ${fileSize}): truncated (download it again)`);
    located.set(String(key), [pos + 8, bytes]);
    pos += 8 + bytes;
  }
  const { tensors, skipped } = tensorsOf(root, fail);
  const entries = tensors.map(([name, t]) => {
    const where = located.get(t.storage.key);
    if (!where) return fail(`misses storage ${t.storage.key} of tensor ${name}: corrupted`);
    return entryFor(name, t, where[0], where[1], fail);
  });
  return { format: 'legacy', entries, skipped };
}

// ---- entry points -----------------------------------------------------------------------------------

/** Reads the index of a `torch.save` file (zip or legacy); errors name the file and the reason. */
export function readTorchFileIndex(path: string): TorchFileIndex {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new TorchFileError(path, `cannot be opened (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const fail = (reason: string): never => {
    throw new TorchFileError(path, reason);
  };
  try {
    const fileSize = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(fileSize, 512));
    readSync(fd, head, 0, head.length, 0);
    if (fileSize < 4) fail(`is ${fileSize} bytes long: not a torch.save file (an empty or truncated download?)`);
    if (head.readUInt32LE(0) === 0x04034b50) return indexZip(fd, fileSize, fail);
    if (head[0] === 0x80 && head[1]! >= 2) return indexLegacy(fd, fileSize, fail); // a pickle: the legacy format starts with its magic number
    if (head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') {
      fail('is a tar archive (the torch.save format of PyTorch < 0.1.10): convert it with Python, torch.save(torch.load(f), "new.pth")');
    }
    if (head.subarray(0, 15).toString('latin1').startsWith('<')) fail('is text (HTML or XML), not a torch.save file: the download returned an error page');
    return fail(`is not a torch.save file (neither zip nor legacy format; first bytes ${head.subarray(0, 8).toString('hex')})`);
  } catch (err) {
    if (err instanceof TorchFileError) throw err;
    throw new TorchFileError(path, `cannot be read: ${(err as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads the tensors of a `torch.save` file (zip or legacy format) without Python: the index
 * here, the bytes natively off the event loop. Non-contiguous views come back contiguous.
 */
export async function readTorchFile(path: string): Promise<NativeNamedTensors> {
  const index = readTorchFileIndex(path);
  try {
    return await ensureRuntime().readSafetensors(path, 0, index.entries);
  } catch (err) {
    throw new TorchFileError(path, `cannot be read: ${(err as Error).message}`);
  }
}
