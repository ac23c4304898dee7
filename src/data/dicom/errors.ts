/** The one error type the DICOM reader throws for a file it cannot read. */

/** A DICOM file that cannot be read: names the file (a path, or "<buffer>") and the reason. */
export class DicomError extends Error {
  /**
   * @param file the path of the file, or "<buffer>" when reading from memory
   * @param reason why the file cannot be read, as a sentence fragment ("pixel data is truncated ...")
   */
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'DicomError';
  }
}
