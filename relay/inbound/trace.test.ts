import { describe, expect, it } from 'vitest';
import { receivedHeader, receivedHeaderBytes } from './helo.ts';
import { isValidClusterId, ownTraceLength, traceMatcher } from './trace.ts';

describe('trace', () => {
  it.each([
    ['relay.example.com', true],
    ['mailroute.mailroute-system', true],
    ['a', true],
    ['-a', false],
    ['a b', false],
    ['a)b', false],
    ['', false],
    ['x'.repeat(129), false],
  ])('cluster id %j valid: %s', (id, ok) => expect(isValidClusterId(id)).toBe(ok));

  it("the relay's own Received: header carries its trace, and only its own cluster id matches", () => {
    const header = receivedHeader({
      helo: 'old.example.test',
      clientAddress: '192.0.2.1',
      clientHostname: '',
      byHostname: 'relay-0',
      clusterId: 'mailroute.mail',
      protocol: 'ESMTP',
      id: 'abc.1',
      forRecipient: 'a@example.com',
      date: new Date(0),
    });
    expect(header).toContain('by relay-0 (mailroute mailroute.mail) with ESMTP id abc.1');
    const value = header.slice('Received:'.length);
    expect(traceMatcher('mailroute.mail')(value)).toBe(true);
    expect(traceMatcher('mailroute.mai')(value)).toBe(false);
    expect(traceMatcher('other.mail')(value)).toBe(false);
    // a matcher made before another id's still tests for its own id
    const first = traceMatcher('mailroute.mail');
    traceMatcher('other.mail');
    expect(first(value)).toBe(true);
  });

  it('ownTraceLength: the length of the first field when it is our Received:, else 0', () => {
    const ours = 'Received: from a\r\n\tby relay-0 (mailroute c1) with ESMTP id 1;\r\n\tdate\r\n';
    const rest = 'Received: from b by c; date\r\nSubject: x\r\n\r\nbody\r\n';
    expect(ownTraceLength(Buffer.from(ours + rest), 'c1')).toBe(ours.length);
    expect(ownTraceLength(Buffer.from(ours + rest), 'c2')).toBe(0);
    expect(ownTraceLength(Buffer.from(rest + ours), 'c1')).toBe(0);
    expect(ownTraceLength(Buffer.from('Subject: x\r\n\r\n'), 'c1')).toBe(0);
  });

  it('ownTraceLength counts bytes: a UTF-8 recipient in our header is skipped whole, the next field kept', () => {
    const ours = receivedHeaderBytes({
      helo: 'old.example.test',
      clientAddress: '192.0.2.1',
      clientHostname: '',
      byHostname: 'relay-0',
      clusterId: 'c1',
      protocol: 'ESMTP',
      id: 'abc.1',
      forRecipient: '"xčĊX-Spam-Flag:NO"@example.com',
      smtputf8: true,
      date: new Date(0),
    });
    const rest = Buffer.from('Subject: x\r\n\r\nbody\r\n');
    const message = Buffer.concat([ours, rest]);
    expect(ours.length).toBeGreaterThan(ours.toString('utf8').length);
    expect(ownTraceLength(message, 'c1')).toBe(ours.length);
    expect(message.subarray(ownTraceLength(message, 'c1')).equals(rest)).toBe(true);
  });
});
