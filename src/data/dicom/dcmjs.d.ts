/** The small part of dcmjs (which ships no types) that the DICOM reader uses. */
declare module 'dcmjs' {
  /** One parsed element: its VR and its values (numbers, strings, person names or buffers). */
  export interface DcmjsElement {
    vr?: string;
    Value?: unknown[] | 0;
  }
  export interface DcmjsDicomDict {
    meta: Record<string, DcmjsElement>;
    dict: Record<string, DcmjsElement>;
  }
  export interface DcmjsReadOptions {
    ignoreErrors?: boolean;
    untilTag?: string | null;
    includeUntilTagValue?: boolean;
    noCopy?: boolean;
    forceStoreRaw?: boolean;
  }
  export interface DcmjsLogger {
    setLevel(level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent'): void;
    getLogger(name: string): DcmjsLogger;
  }
  const dcmjs: {
    data: {
      DicomMessage: { readFile(buffer: ArrayBuffer, options?: DcmjsReadOptions): DcmjsDicomDict };
    };
    log: DcmjsLogger;
  };
  export default dcmjs;
}
