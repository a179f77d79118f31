// The inbound content scan's vouch reaches the relay's spool (relay/spool/wire-ready.ts): a body accepted over SMTP
// with no line that starts with a dot is kept in memory marked wire-ready, one with such a line is not, and both
// arrive at real smtp-server destinations exactly as the spool holds them (the marked one sent without a second scan,
// the other dot-stuffed by the client and unstuffed by the server).
import { afterEach, describe, expect, it } from 'vitest';
import { isWireReady } from '../../relay/spool/wire-ready.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { dualDomain, queuedId, startRelay, submit, type InProcessRelay } from './relay-harness.ts';

describe('wire-ready bodies through the relay', () => {
  let relay: InProcessRelay | undefined;
  const peers: SmtpPeer[] = [];
  afterEach(async () => {
    await relay?.close();
    for (const p of peers.splice(0)) await p.close();
    relay = undefined;
  });

  it('marks a body without dot lines, not one with them, and both arrive byte for byte on both legs', async () => {
    const primary = await startSmtpPeer('primary');
    const copy = await startSmtpPeer('copy');
    peers.push(primary, copy);
    // both destinations down: the messages stay queued while their bodies are looked at
    await primary.down();
    await copy.down();
    relay = await startRelay({ 'd.yaml': dualDomain('wire.test', primary.port, copy.port) });
    const port = relay.relay.smtp.port;
    const mail = (subject: string, body: string) => ({
      envelope: { from: 'a@sender.test', to: ['bob@wire.test'] },
      raw: `From: a@sender.test\r\nTo: bob@wire.test\r\nSubject: ${subject}\r\n\r\n${body}`,
    });
    const plainId = queuedId(await submit(port, mail('plain', 'line one\r\nline two\r\n')));
    const dottedId = queuedId(
      await submit(port, mail('dotted', 'line one\r\n.hidden\r\n..two\r\n.\r\nend\r\n')),
    );

    const spool = relay.relay.spool;
    const held = async (id: string): Promise<{ bytes: Buffer; marked: boolean }> => {
      const bytes = await spool.readBody(id);
      const kept = spool.body(id, bytes.length);
      expect(Buffer.isBuffer(kept)).toBe(true);
      return { bytes, marked: Buffer.isBuffer(kept) && isWireReady(kept) };
    };
    const plain = await held(plainId);
    const dotted = await held(dottedId);
    expect(plain.marked).toBe(true);
    expect(dotted.marked).toBe(false);
    expect(dotted.bytes.toString('latin1')).toContain('\r\n.hidden\r\n..two\r\n.\r\nend\r\n');

    await primary.up();
    await copy.up();
    relay.relay.delivery.flush();
    await waitFor(() => primary.messages.length === 2 && copy.messages.length === 2, { timeoutMs: 15_000 });
    for (const peer of [primary, copy]) {
      const got = (subject: string) =>
        peer.messages.find((m) => m.raw.toString('latin1').includes(`Subject: ${subject}\r\n`))?.raw;
      expect(got('plain')?.equals(plain.bytes)).toBe(true);
      expect(got('dotted')?.equals(dotted.bytes)).toBe(true);
    }
  });
});
