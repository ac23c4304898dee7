/** Types for scripts/libtorch.mjs (plain Node, used by setup, CMake, binding.gyp and tests). */
export interface LibTorchLocation {
  source: string;
  cmakeDir: string;
  prefix: string;
  includeDirs: string[];
  libDirs: string[];
  cxxAbi: number;
  version?: string;
}
export const DEBIAN_INSTALL: string[];
export function findLibTorch(env?: Record<string, string | undefined>): LibTorchLocation | undefined;
export function missingLibTorchMessage(reason?: string, rebuild?: string): string;
export const packageRootDir: string;
export function resolvePackageDir(name: string, root?: string): string;
export function resolveBin(name: string, bin?: string, root?: string): string;
export function napiIncludeDirs(root?: string): { nodeAddonApi: string; nodeApiHeaders: string };
/** native/binding/*.cc, the N-API layer (one slice per concept). */
export function napiSources(root: string): string[];
export function addonSources(root: string): string[];
export function turboJpeg(): boolean;
