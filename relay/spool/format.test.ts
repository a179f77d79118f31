import { describe, expect, it } from 'vitest';
import {
  classifyEntry,
  encodeMessageFile,
  encodeTrailer,
  FOOTER_LEN,
  parseFooter,
  type QueueEntry,
} from './format.ts';
import { isQueueId } from './spool.ts';
import type { SpoolState } from './types.ts';

const state: SpoolState = {
  version: 1,
  id: '0000000000000abc',
  meta: {
    mailFrom: 'a@b.example',
    clientAddress: '127.0.0.1',
    clientHostname: '',
    helo: 'h',
    receivedAt: '2026-11-28T10:00:00.000Z',
    revision: 'r',
    smtputf8: false,
    body8bit: false,
  },
  size: 5,
  legs: [],
};

describe('message file format', () => {
  it('round-trips: the body first, then the state, found through the footer', () => {
    const body = Buffer.from('hi\r\n\r\n');
    const file = encodeMessageFile(body, { ...state, size: body.length });
    const layout = parseFooter(file.subarray(file.length - FOOTER_LEN), file.length);
    if (typeof layout === 'string') throw new Error(layout);
    expect(layout.bodySize).toBe(body.length);
    expect(file.subarray(0, layout.bodySize)).toEqual(body);
    const json = file.subarray(layout.jsonOffset, layout.jsonOffset + layout.jsonLength).toString();
    expect(JSON.parse(json)).toEqual({ ...state, size: body.length });
  });

  it('the footer is 33 bytes of ASCII and the state is UTF-8 JSON', () => {
    const t = encodeTrailer({ ...state, meta: { ...state.meta, mailFrom: 'jörg@b.example' } });
    expect(FOOTER_LEN).toBe(33);
    expect(t.subarray(t.length - FOOTER_LEN).toString('latin1')).toMatch(/^\nmailroute-spool-v1 \d{12}\n$/);
    expect(t.toString('utf8')).toContain('jörg@b.example');
  });

  it.each([
    ['shorter than a footer', Buffer.from('abc'), 3, /too short/],
    ['no footer', Buffer.alloc(FOOTER_LEN, 'x'), 100, /no mailroute-spool-v1 footer/],
    ['length not digits', Buffer.from('\nmailroute-spool-v1 00000000001x\n', 'latin1'), 100, /not 12 digits/],
    [
      'length beyond the file',
      Buffer.from('\nmailroute-spool-v1 000000000999\n', 'latin1'),
      100,
      /999 bytes of state/,
    ],
  ])('refuses a footer: %s', (_what, footer, size, why) => {
    const r = parseFooter(footer, size);
    expect(typeof r === 'string' && r).toMatch(why);
  });

  it.each<[string, QueueEntry]>([
    ['0000000000000abc.msg', { kind: 'message', id: '0000000000000abc' }],
    ['0000000000000abc.json', { kind: 'state', id: '0000000000000abc' }],
    ['0000000000000abc.msg.tmp', { kind: 'temp' }],
    ['0000000000000abc.json.tmp', { kind: 'temp' }],
    ['0000000000000abc.eml', { kind: 'unknown' }],
    ['0000000000000ABC.msg', { kind: 'unknown' }],
    ['../x.msg', { kind: 'unknown' }],
    ['.msg', { kind: 'unknown' }],
    ['notes', { kind: 'unknown' }],
  ])('classifies %s', (name, want) => {
    expect(classifyEntry(name, isQueueId)).toEqual(want);
  });
});
