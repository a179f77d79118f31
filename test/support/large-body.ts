// Large message bodies for spool tests (relay/spool/body-crc.test.ts, relay/delivery/body-check.test.ts): a body of
// distinct lines (a range of zeros or a changed byte is never mistaken for the original), split as a socket delivers
// it, and the initial state a message file's trailer holds.
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { FOOTER_LEN, parseFooter } from '../../relay/spool/format.ts';
import type { SpoolState } from '../../relay/spool/types.ts';

/** About `kib` KiB: `head` (header lines and the empty line), then numbered lines that all differ. */
export function bigBody(kib: number, head = 'From: alice@sender.example\r\nSubject: big\r\n\r\n'): Buffer {
  const lines: string[] = [head];
  for (let n = 0, size = 0; size < kib * 1024; n++) {
    const line = `line ${String(n).padStart(7, '0')} of a large message body, with some text to fill it\r\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join(''), 'latin1');
}

/** The body as it arrives from a socket: 64 KiB chunks. */
export function chunksOf(b: Buffer): Readable {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += 65536) out.push(b.subarray(i, i + 65536));
  return Readable.from(out);
}

/** The initial state in the trailer of the message file at `path`, as the spool wrote it. */
export async function trailerState(path: string): Promise<SpoolState> {
  const data = await readFile(path);
  const layout = parseFooter(data.subarray(data.length - FOOTER_LEN), data.length);
  if (typeof layout === 'string') throw new Error(layout);
  return JSON.parse(
    data.toString('utf8', layout.jsonOffset, layout.jsonOffset + layout.jsonLength),
  ) as SpoolState;
}
