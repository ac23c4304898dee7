/** Types for scripts/compile-check.mjs (syntax checks against LibTorch 2.6 and CUDA headers). */
export interface CompileResult {
  name: string;
  ok: boolean;
  seconds: number;
  skipped?: string;
  architectures?: string[];
  errors?: string[];
  warnings?: string[];
  output?: string;
}
export function cacheDir(): string;
export function compileCheck(options?: { only?: string[] }): Promise<CompileResult[]>;
