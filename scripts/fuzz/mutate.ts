// The fuzzer's input source: seeds from test/fuzz-corpus/<target>/, mutated a few times each
// with byte edits and tokens that matter to the parsers (CRLF, NUL, chunk sizes, header
// names, YAML punctuation), spliced with each other. Seeded, so a finding reproduces from its
// seed and input number.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface FuzzTarget {
  name: string;
  /** Throws (or rejects) only when the input showed a defect. */
  run(input: Buffer, rand: () => number): void | Promise<void>;
}

/** A defect the target found, with what it saw. */
export class FuzzFinding extends Error {}

// Compiled to dist/scripts/fuzz/; the corpus stays in the source tree.
const CORPUS = fileURLToPath(new URL('../../../test/fuzz-corpus/', import.meta.url));

const TOKENS = [
  '\r\n', '\n', '\r', '\0', ' ', ':', '\t', '\x7f', '\xff', '0\r\n\r\n', 'ffffffff\r\n', '-1',
  'content-length: ', 'transfer-encoding: chunked', 'host: ', 'HTTP/1.1', 'HTTP/1.0', 'GET ', 'CONNECT ',
  '100 Continue', '101 Switching', '204', '304', 'expect: 100-continue', 'connection: close', 'upgrade: h2c',
  '{', '}', '[', ']', '- ', ': ', '"', "'", '&a', '*a', '!!binary', '~', '1e999', '---\n', '...', '%00', '..', '//',
  'apiVersion: v2', 'kind: Namespace', 'metadata: {}', 'null', '[fd00::1]', '255.255.255.255', '99999',
  // HTTP/2 frame headers (length, type, flags, stream) and HPACK pieces: an empty SETTINGS, a
  // CONTINUATION, RST_STREAM, GOAWAY, a huge length, a table size update, a long integer,
  // literal fields that name /secret and a pseudo-header out of place.
  '\0\0\0\x04\0\0\0\0\0', '\0\0\x05\x09\x04\0\0\0\x01', '\0\0\x04\x03\0\0\0\0\x01\0\0\0\x08',
  '\0\0\x08\x07\0\0\0\0\0\0\0\0\x01\0\0\0\x01', '\xff\xff\xff', '\x3f\xe1\x1f', '\x7f\xff\xff\xff\xff\x0f',
  '\x04\x07/secret', '\x04\x0a/ok/../secret', '\x00\x05:path\x07/secret', '\x40\x01a\x01b', '\x10\x01\x00\x00',
];

/** Mulberry32: small, fast and good enough to drive mutations reproducibly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function seeds(target: FuzzTarget): Buffer[] {
  const dir = path.join(CORPUS, target.name);
  return readdirSync(dir).sort().map((f) => readFileSync(path.join(dir, f)));
}

/** One input: a seed, with 1 to 8 edits. */
export function mutate(corpus: readonly Buffer[], rand: () => number): Buffer {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  let buf = Buffer.from(pick(corpus));
  const edits = 1 + Math.floor(rand() * 8);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(rand() * (buf.length + 1));
    const len = Math.floor(rand() * Math.min(16, buf.length - at + 1));
    switch (Math.floor(rand() * 6)) {
      case 0: // flip a byte
        if (buf.length > 0) buf[Math.min(at, buf.length - 1)] = Math.floor(rand() * 256);
        break;
      case 1: // insert a token
        buf = Buffer.concat([buf.subarray(0, at), Buffer.from(pick(TOKENS), 'latin1'), buf.subarray(at)]);
        break;
      case 2: // delete a range
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + len)]);
        break;
      case 3: // repeat a range
        buf = Buffer.concat([buf.subarray(0, at + len), buf.subarray(at, at + len), buf.subarray(at + len)]);
        break;
      case 4: // splice another seed in
        buf = Buffer.concat([buf.subarray(0, at), pick(corpus), buf.subarray(at)]);
        break;
      default: // replace a digit run with another number
        buf = Buffer.from(buf.toString('latin1').replace(/\d+/, String(Math.floor(rand() ** 3 * 2 ** 32))), 'latin1');
    }
  }
  return buf;
}

export interface FuzzReport {
  target: string;
  inputs: number;
  seconds: number;
  /** The first defect found: its input number, message and input (base64). */
  finding?: { input: number; message: string; base64: string };
}

/** Runs `count` inputs (or until `maxMs`) through `target`; stops at the first defect. */
export async function fuzz(target: FuzzTarget, count: number, seed: number, maxMs = Infinity): Promise<FuzzReport> {
  const rand = prng(seed);
  const corpus = seeds(target);
  const started = performance.now();
  let n = 0;
  for (; n < count && performance.now() - started < maxMs; n++) {
    const input = n < corpus.length ? corpus[n]! : mutate(corpus, rand);
    try {
      await target.run(input, rand);
    } catch (err) {
      return { target: target.name, inputs: n + 1, seconds: (performance.now() - started) / 1000, finding: { input: n, message: (err as Error).stack ?? String(err), base64: input.toString('base64') } };
    }
  }
  return { target: target.name, inputs: n, seconds: (performance.now() - started) / 1000 };
}
