/** Types for scripts/cuda-arch.mjs (the CUDA architectures the build requests). */
export const MIN_DEFAULT_ARCH: number;
export function cudaArchitectures(options?: { env?: Record<string, string | undefined>; nvcc?: string; supported?: number[] }): { architectures: string[]; source: string };
export function parseTorchArchList(list: string): string[];
export function supportedArchitectures(nvcc: string): number[];
export function gencodeFlags(architectures: string[]): string[];
