/** A raw HTTP client for the server tests: any body, any header, and whatever comes back. */
import { request } from 'node:http';
import { connect } from 'node:net';

export interface HttpReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json: () => Record<string, unknown>;
}

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** Send the body chunked (no Content-Length). */
  chunked?: boolean;
}

/** Sends one request; resolves with the reply (never rejects on a status; rejects on a socket error). */
export function send(url: string, options: HttpRequestOptions = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.body !== undefined && !options.chunked) headers['Content-Length'] = String(options.body.length);
    const req = request(url, { method: options.method ?? (options.body ? 'POST' : 'GET'), headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) as Record<string, unknown> });
      });
      res.on('error', reject);
    });
    // The server may answer (413, 415) and close before the whole body is written: the reply is
    // what matters, so write errors after a response are ignored.
    req.on('error', reject);
    if (options.body !== undefined) {
      const body = options.body;
      const step = 64 * 1024;
      let offset = 0;
      const writeMore = (): void => {
        while (offset < body.length) {
          const chunk = body.subarray(offset, offset + step);
          offset += step;
          if (!req.write(chunk)) {
            req.once('drain', writeMore);
            return;
          }
        }
        req.end();
      };
      writeMore();
    } else {
      req.end();
    }
  });
}

/**
 * Sends the request line, headers and only `partial` bytes of a body of declared `length`, then
 * waits for the server to answer: the status line's code, or 0 if the server closed silently.
 */
export function sendPartial(port: number, path: string, contentType: string, length: number, partial: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${contentType}\r\nContent-Length: ${length}\r\n\r\n`);
      socket.write(partial);
    });
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('close', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
    socket.on('error', reject);
  });
}
