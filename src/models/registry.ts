/**
 * The model zoo registry (`models/registry.json`): native encoders with their feature channels,
 * strides, Python source and parameter count; architectures; and the backbone names the CLI
 * accepts (`unet_se50`, `albunet34`, ...). Read once and validated, so a malformed registry fails
 * with the entry named.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../core/package-info.js';

/** The architectures the native side builds. */
export const ARCHITECTURES = ['unet', 'scseunet', 'albunet', 'unetpp', 'deeplabv3', 'bisenet', 'daunet'] as const;
/**
 * The architectures with auxiliary heads (the 42nd place's BiSeNet and dual-attention UNet): in
 * training their auxiliary outputs add `loss.auxWeight` x the mask loss; inference returns the main output.
 */
export const AUX_HEAD_ARCHITECTURES: readonly Architecture[] = ['bisenet', 'daunet'];
export type Architecture = (typeof ARCHITECTURES)[number];

/** A native encoder: the contract is 5 feature maps at `strides` with `channels`. */
export interface EncoderEntry {
  name: string;
  family: 'resnet' | 'senet' | 'efficientnet';
  /** The Python source whose parameter names (and state dicts) the encoder follows. */
  source: string;
  channels: number[];
  strides: number[];
  /** Parameters without the source model's classifier. */
  parameters: number;
  /**
   * Names of the source model's classifier tensors (`fc.*`, `last_linear.*`, EfficientNet's
   * `_conv_head`, `_bn1.*`, `_fc.*`): in upstream files, not in the encoder; ignored on load.
   */
  classifier: string[];
  /** Pretrained weights by name (`imagenet`): the files the seeds started from. */
  pretrained: Map<string, PretrainedEntry>;
}

/** An upstream weights file: where it is, its name in the cache, and its checksum. */
export interface PretrainedEntry {
  /** The upstream address (PNEUMO_WEIGHTS_MIRROR replaces everything before the file name). */
  url: string;
  /** The file name (the cache and mirrors use it as is). */
  file: string;
  /** The full SHA-256 (hex), when known. */
  sha256?: string;
  /**
   * The first hex digits of the SHA-256 when that is all upstream publishes (the hash suffix of
   * torch.hub-style file names); then only this prefix is verified.
   */
  sha256Prefix?: string;
  /** Where the weights come from (package and version), for people. */
  from: string;
}

export interface ArchitectureEntry {
  name: Architecture;
  description: string;
  /** Input height and width must be multiples of this. */
  divisor: number;
  decoderChannels: number[];
}

/** A named architecture + encoder pair (a CLI backbone name). */
export interface BackboneEntry {
  name: string;
  architecture: Architecture;
  encoder: string;
  decoderChannels?: number[];
  note?: string;
}

export interface Registry {
  version: number;
  encoders: Map<string, EncoderEntry>;
  architectures: Map<Architecture, ArchitectureEntry>;
  backbones: Map<string, BackboneEntry>;
}

function fail(where: string, expected: string, actual: unknown): never {
  throw new TypeError(`models/registry.json: expected ${expected} for ${where} but found ${JSON.stringify(actual)}`);
}

function intArray(where: string, v: unknown, length?: number): number[] {
  if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) && x > 0) || (length !== undefined && v.length !== length)) {
    fail(where, length === undefined ? 'an array of positive integers' : `an array of ${length} positive integers`, v);
  }
  return v as number[];
}

function str(where: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') fail(where, 'a non-empty string', v);
  return v;
}

/** Validates a parsed registry file (exported for tests). */
export function parseRegistry(raw: unknown): Registry {
  if (typeof raw !== 'object' || raw === null) fail('the file', 'an object', raw);
  const r = raw as Record<string, Record<string, Record<string, unknown>>>;
  const encoders = new Map<string, EncoderEntry>();
  for (const [name, e] of Object.entries(r.encoders ?? fail('encoders', 'an object', r.encoders))) {
    const family = e.family;
    if (family !== 'resnet' && family !== 'senet' && family !== 'efficientnet') fail(`encoders.${name}.family`, 'resnet, senet or efficientnet', family);
    const strides = intArray(`encoders.${name}.strides`, e.strides, 5);
    if (strides.join() !== '2,4,8,16,32') fail(`encoders.${name}.strides`, '[2, 4, 8, 16, 32]', strides);
    if (!Number.isInteger(e.parameters) || (e.parameters as number) <= 0) fail(`encoders.${name}.parameters`, 'a positive integer', e.parameters);
    const classifier = e.classifier ?? [];
    if (!Array.isArray(classifier) || !classifier.every((c) => typeof c === 'string' && c !== '')) fail(`encoders.${name}.classifier`, 'an array of tensor names', classifier);
    const pretrained = new Map<string, PretrainedEntry>();
    for (const [kind, p] of Object.entries((e.pretrained ?? {}) as Record<string, Record<string, unknown>>)) {
      const where = `encoders.${name}.pretrained.${kind}`;
      const url = str(`${where}.url`, p.url);
      if (!/^https?:\/\/[^/]+\/.+/.test(url)) fail(`${where}.url`, 'an http(s) address', url);
      const file = str(`${where}.file`, p.file);
      if (!/^[\w.-]+$/.test(file) || !url.endsWith(`/${file}`)) fail(`${where}.file`, 'the file name the address ends with', file);
      const entry: PretrainedEntry = { url, file, from: str(`${where}.from`, p.from) };
      if (p.sha256 !== undefined) {
        if (typeof p.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(p.sha256)) fail(`${where}.sha256`, '64 lowercase hex digits', p.sha256);
        entry.sha256 = p.sha256;
      }
      if (p.sha256Prefix !== undefined) {
        if (typeof p.sha256Prefix !== 'string' || !/^[0-9a-f]{8,63}$/.test(p.sha256Prefix)) fail(`${where}.sha256Prefix`, '8 to 63 lowercase hex digits', p.sha256Prefix);
        entry.sha256Prefix = p.sha256Prefix;
      }
      if ((entry.sha256 === undefined) === (entry.sha256Prefix === undefined)) fail(where, 'exactly one of sha256 and sha256Prefix', p);
      pretrained.set(kind, entry);
    }
    encoders.set(name, {
      name,
      family,
      source: str(`encoders.${name}.source`, e.source),
      channels: intArray(`encoders.${name}.channels`, e.channels, 5),
      strides,
      parameters: e.parameters as number,
      classifier: classifier as string[],
      pretrained,
    });
  }
  const architectures = new Map<Architecture, ArchitectureEntry>();
  for (const [name, a] of Object.entries(r.architectures ?? fail('architectures', 'an object', r.architectures))) {
    if (!(ARCHITECTURES as readonly string[]).includes(name)) fail(`architectures.${name}`, `one of ${ARCHITECTURES.join(', ')}`, name);
    if (!Number.isInteger(a.divisor) || (a.divisor as number) < 1) fail(`architectures.${name}.divisor`, 'a positive integer', a.divisor);
    architectures.set(name as Architecture, {
      name: name as Architecture,
      description: str(`architectures.${name}.description`, a.description),
      divisor: a.divisor as number,
      decoderChannels: intArray(`architectures.${name}.decoderChannels`, a.decoderChannels),
    });
  }
  const backbones = new Map<string, BackboneEntry>();
  for (const [name, b] of Object.entries(r.backbones ?? fail('backbones', 'an object', r.backbones))) {
    const architecture = str(`backbones.${name}.architecture`, b.architecture);
    if (!architectures.has(architecture as Architecture)) fail(`backbones.${name}.architecture`, 'a registered architecture', architecture);
    const encoder = str(`backbones.${name}.encoder`, b.encoder);
    if (!encoders.has(encoder)) fail(`backbones.${name}.encoder`, 'a registered encoder', encoder);
    const entry: BackboneEntry = { name, architecture: architecture as Architecture, encoder };
    if (b.decoderChannels !== undefined) entry.decoderChannels = intArray(`backbones.${name}.decoderChannels`, b.decoderChannels);
    if (b.note !== undefined) entry.note = str(`backbones.${name}.note`, b.note);
    backbones.set(name, entry);
  }
  const version = (raw as { version?: unknown }).version;
  if (version !== 1) fail('version', '1', version);
  return { version, encoders, architectures, backbones };
}

let cached: Registry | undefined;

/** The package's registry (read once). */
export function registry(): Registry {
  cached ??= parseRegistry(JSON.parse(readFileSync(join(packageRoot(), 'models', 'registry.json'), 'utf8')));
  return cached;
}

/** Every backbone name, in registry order. */
export function backboneNames(): string[] {
  return [...registry().backbones.keys()];
}

/** The backbone entry for `name`; throws naming the known ones otherwise. */
export function backbone(name: string): BackboneEntry {
  const entry = registry().backbones.get(name);
  if (!entry) throw new TypeError(`Expected one of ${backboneNames().join(', ')} for backbone but received ${JSON.stringify(name)}`);
  return entry;
}

/** The native encoder entry for `name`; throws naming the known ones otherwise. */
export function encoder(name: string): EncoderEntry {
  const entry = registry().encoders.get(name);
  if (!entry) throw new TypeError(`Expected one of ${[...registry().encoders.keys()].join(', ')} for encoder but received ${JSON.stringify(name)}`);
  return entry;
}

/** The architecture entry for `name`. */
export function architecture(name: string): ArchitectureEntry {
  const entry = registry().architectures.get(name as Architecture);
  if (!entry) throw new TypeError(`Expected one of ${ARCHITECTURES.join(', ')} for architecture but received ${JSON.stringify(name)}`);
  return entry;
}
