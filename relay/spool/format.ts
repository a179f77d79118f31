// The on-disk format of one queued message (pure: no I/O). One file per message, `<id>.msg`:
//
//   <body: the message exactly as accepted, `size` bytes>
//   <the state as the file was written: JSON of SpoolState, N bytes (the initial state, or for a message the accept
//    log held first, the latest state it held: spool.ts relog)>
//   <footer: "\nmailroute-spool-v1 " + N as 12 decimal digits + "\n", 33 bytes>
//
// The body comes first so that it streams to disk as it arrives; the state (which needs the body's size) follows
// at the end, and the whole file is written once under its final name and made durable: one durable write per
// accepted message (an O_DSYNC write, or an fsync after a body written in pieces: spool.ts, which also owns the mode
// that marks the file complete).
// Later states (attempts, results) go to `<id>.json`, which overrides the initial state while it exists.
// The state in the trailer records the body's CRC-32 (SpoolState.bodyCrc32, types.ts; absent in files written before
// it existed): the footer proves the trailer was written, not that the body blocks before it reached the disk.
import type { SpoolState } from './types.ts';

const MESSAGE_EXT = '.msg';
const STATE_EXT = '.json';
export const TEMP_EXT = '.tmp';

const FOOTER_PREFIX = '\nmailroute-spool-v1 ';
const DIGITS = 12;
export const FOOTER_LEN = FOOTER_PREFIX.length + DIGITS + 1;

export const messageFile = (id: string): string => `${id}${MESSAGE_EXT}`;
export const stateFile = (id: string): string => `${id}${STATE_EXT}`;

/** What follows the body in a message file: the state's JSON and the footer. */
export function encodeTrailer(state: SpoolState): Buffer {
  const json = JSON.stringify(state);
  // one buffer for JSON and footer (the footer is ASCII: its UTF-8 is its latin1)
  const footer = `${FOOTER_PREFIX}${String(Buffer.byteLength(json)).padStart(DIGITS, '0')}\n`;
  return Buffer.from(json + footer);
}

/** A whole message file (tests and benchmarks that build a spool directly). */
export function encodeMessageFile(body: Buffer, state: SpoolState): Buffer {
  return Buffer.concat([body, encodeTrailer(state)]);
}

export interface TrailerLayout {
  /** Bytes of the body, from offset 0. */
  bodySize: number;
  /** Where the state's JSON starts, and its length. */
  jsonOffset: number;
  jsonLength: number;
}

/**
 * Where body and state are in a message file of fileSize bytes whose last FOOTER_LEN bytes are footer. A string
 * names the first problem (a file cut short, or not a message file).
 */
export function parseFooter(footer: Buffer, fileSize: number): TrailerLayout | string {
  if (fileSize < FOOTER_LEN || footer.length !== FOOTER_LEN)
    return `file too short (${fileSize} bytes) for a footer`;
  const text = footer.toString('latin1');
  if (!text.startsWith(FOOTER_PREFIX) || !text.endsWith('\n')) return 'no mailroute-spool-v1 footer';
  const digits = text.slice(FOOTER_PREFIX.length, -1);
  if (!/^[0-9]{12}$/.test(digits)) return `footer length ${JSON.stringify(digits)} is not 12 digits`;
  const jsonLength = Number(digits);
  const jsonOffset = fileSize - FOOTER_LEN - jsonLength;
  if (jsonOffset < 0)
    return `footer says ${jsonLength} bytes of state, the file has ${fileSize - FOOTER_LEN}`;
  return { bodySize: jsonOffset, jsonOffset, jsonLength };
}

/** What a queue directory entry is. */
export type QueueEntry =
  { kind: 'message'; id: string } | { kind: 'state'; id: string } | { kind: 'temp' } | { kind: 'unknown' };

export function classifyEntry(name: string, isId: (s: string) => boolean): QueueEntry {
  if (name.endsWith(TEMP_EXT)) return { kind: 'temp' };
  const dot = name.indexOf('.');
  if (dot <= 0) return { kind: 'unknown' };
  const id = name.slice(0, dot);
  if (!isId(id)) return { kind: 'unknown' };
  const ext = name.slice(dot);
  if (ext === MESSAGE_EXT) return { kind: 'message', id };
  if (ext === STATE_EXT) return { kind: 'state', id };
  return { kind: 'unknown' };
}
