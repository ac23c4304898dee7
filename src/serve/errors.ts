/** The typed error of the serving layer: a stable `code` for callers and HTTP status mapping. */

/**
 * Why a {@link Segmenter} call was refused or failed:
 * - `BAD_INPUT`: the bytes are not a decodable DICOM, PNG or JPEG, or raw pixels are malformed
 * - `INPUT_TOO_LARGE`: the image has more pixels than `maxPixels`
 * - `SIZE_TOO_LARGE`: the call asks for an inference size above `maxSize`
 * - `OVER_MEMORY_BUDGET`: the call's estimated working memory is above `maxRequestBytes`
 * - `QUEUE_FULL`: `maxQueue` calls are already waiting; retry later
 * - `ABORTED`: the call's `AbortSignal` fired (its `reason` is the error's `cause`)
 * - `DISPOSED`: the segmenter was disposed before the call completed
 */
export type SegmenterErrorCode = 'BAD_INPUT' | 'INPUT_TOO_LARGE' | 'SIZE_TOO_LARGE' | 'OVER_MEMORY_BUDGET' | 'QUEUE_FULL' | 'ABORTED' | 'DISPOSED';

/** An error of the serving layer with a stable `code` (see {@link SegmenterErrorCode}). */
export class SegmenterError extends Error {
  constructor(
    readonly code: SegmenterErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SegmenterError';
  }
}
