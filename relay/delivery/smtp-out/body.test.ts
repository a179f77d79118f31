import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dotStuffingReference } from '../../../test/support/dot-stuffing-reference.ts';
import type { MessageBody } from '../../spool/types.ts';
import { markWireReady } from '../../spool/wire-ready.ts';
import { writeBody } from './body.ts';

/** What writeBody puts on the wire for body, and how it ended. */
async function wire(body: MessageBody): Promise<{ bytes: Buffer; failure: unknown }> {
  const socket = new PassThrough();
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const failure = await new Promise<unknown>((resolve) => {
    writeBody(socket, body, resolve);
  });
  socket.end();
  await new Promise((resolve) => socket.once('end', resolve));
  return { bytes: Buffer.concat(chunks), failure };
}

describe('writeBody', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailroute-body-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const bodies: [string, string][] = [
    ['no insert', 'Subject: a\r\n\r\nline\r\n'],
    ['dot lines and a bare LF', '.first\r\n\r\n.\r\nx\ny\r\n..two'],
    ['empty', ''],
  ];

  it.each(bodies)(
    'a body in memory (%s), sent twice as the legs of one message do, is the same bytes each time',
    async (_, text) => {
      const body = Buffer.from(text, 'latin1');
      const expected = dotStuffingReference(body);
      const first = await wire(body);
      const second = await wire(body);
      expect(first.failure).toBeUndefined();
      expect(first.bytes.equals(expected)).toBe(true);
      expect(second.bytes.equals(expected)).toBe(true);
      // the body itself is never changed by its encoding
      expect(body.toString('latin1')).toBe(text);
    },
  );

  it('a body marked wire-ready goes as it is, unscanned; one whose first or last byte does not fit is encoded', async () => {
    const plain = Buffer.from('Subject: a\r\n\r\nline\r\n');
    markWireReady(plain);
    const sent = await wire(plain);
    expect(sent.bytes.toString('latin1')).toBe('Subject: a\r\n\r\nline\r\n.\r\n');
    expect(sent.bytes.equals(dotStuffingReference(plain))).toBe(true);
    // the mark is trusted: a body wrongly marked is not scanned (the inbound scan's vouch is what makes it true)
    const lie = Buffer.from('Subject: a\r\n\r\n.x\r\n');
    markWireReady(lie);
    expect((await wire(lie)).bytes.toString('latin1')).toBe('Subject: a\r\n\r\n.x\r\n.\r\n');
    // what is cheap to check is checked
    for (const text of ['.first\r\nx\r\n', 'no line end', '']) {
      const b = Buffer.from(text, 'latin1');
      markWireReady(b);
      expect((await wire(b)).bytes.equals(dotStuffingReference(b))).toBe(true);
    }
  });

  it('a body file (from an offset, other data after it) is encoded as the same body in memory', async () => {
    const text = '.a\r\nb\nc\r.d\r\n';
    const path = join(dir, 'm.msg');
    await writeFile(
      path,
      Buffer.concat([Buffer.from('HEAD'), Buffer.from(text, 'latin1'), Buffer.from('{"state":1}')]),
    );
    const fromFile = await wire({ path, start: 4, size: 4 + text.length });
    const inMemory = await wire(Buffer.from(text, 'latin1'));
    expect(fromFile.failure).toBeUndefined();
    expect(fromFile.bytes.equals(inMemory.bytes)).toBe(true);
  });
});
