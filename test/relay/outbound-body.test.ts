// The relay's outbound SMTP client (relay/delivery/smtp-out) sends a body it holds in memory in one call (encoded
// whole, written with the final dot line) and streams a body from its file. Against a real smtp-server this checks
// that both arrive byte for byte (also over STARTTLS after AUTH), and that the pool still tells "not a byte sent" from
// "sent" when a server drops the connection: the first is requeued on a fresh connection, the second is never sent
// twice by the pool. The peer is the project's scriptable smtp-server (test/support/smtp-peer.ts).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { smtpOutTransportFactory } from '../../relay/delivery/smtp-out/pool.ts';
import type { ServerTarget, ServerTransport } from '../../relay/delivery/transport.ts';
import type { MessageBody } from '../../relay/spool/types.ts';
import { markWireReady } from '../../relay/spool/wire-ready.ts';
import { startSmtpPeer, type PeerOptions, type SmtpPeer } from '../support/smtp-peer.ts';
import { makeSelfSigned } from '../support/tls.ts';

const BODY =
  'From: <a@sender.example>\r\nTo: <b@x.example>\r\nSubject: t\r\n\r\n.a line that starts with a dot\r\n' +
  '.\r\n..\r\nlast line\r\n';

/** A body with no line that starts with a dot: what the inbound scan vouches for. */
const PLAIN = 'From: <a@sender.example>\r\nTo: <b@x.example>\r\nSubject: plain\r\n\r\nno dots here\r\n';

describe("outbound bodies (the relay's SMTP client against smtp-server)", () => {
  let peer: SmtpPeer | undefined;
  let transport: ServerTransport | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    transport?.close();
    await peer?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    peer = transport = dir = undefined;
  });

  const open = async (
    options: PeerOptions = {},
    target: Partial<ServerTarget> = {},
  ): Promise<{ p: SmtpPeer; t: ServerTransport }> => {
    const p = (peer = await startSmtpPeer('body', {}, undefined, options));
    const t = (transport = smtpOutTransportFactory({ hostname: 'relay.test' })({
      host: '127.0.0.1',
      port: p.port,
      tls: 'None',
      maxConnections: 1,
      ...target,
    }));
    return { p, t };
  };
  const send = (t: ServerTransport, raw: MessageBody, size: number) =>
    t.send({ from: 'a@sender.example', to: ['b@x.example'], raw, size });

  it('a body in memory and the same body from its file arrive byte for byte, dot lines included', async () => {
    const { p, t } = await open();
    dir = await mkdtemp(join(tmpdir(), 'mailroute-body-'));
    const path = join(dir, 'm.msg');
    // the spool's file: the body, then state the client must not send
    await writeFile(path, `${BODY}|{"state":"behind the body"}`);
    const big = Buffer.from(`${BODY}${'x'.repeat(998)}\r\n`.repeat(40)); // over 16 KiB: body and dot line apart
    for (const [raw, size] of [
      [Buffer.from(BODY), BODY.length],
      [{ path, size: BODY.length }, BODY.length],
      [big, big.length],
    ] as const) {
      const replies = await send(t, raw, size);
      expect(replies.get('b@x.example')).toMatchObject({ kind: 'smtp', code: 250 });
    }
    expect(p.messages.map((m) => m.raw.toString('latin1'))).toEqual([BODY, BODY, big.toString('latin1')]);
    expect(p.stats.connections).toBe(1); // one pooled connection
  });

  it('a body in memory to a server that wants STARTTLS and AUTH: the same bytes, over TLS, after AUTH', async () => {
    const { p, t } = await open(
      { tls: makeSelfSigned(), auth: { user: 'relay', pass: 's3cret' }, authRequiresTls: true },
      { tls: 'Required', auth: { user: 'relay', pass: 's3cret' }, authKey: 'relay' },
    );
    for (let i = 0; i < 2; i++) {
      const replies = await send(t, Buffer.from(BODY), BODY.length);
      expect(replies.get('b@x.example')).toMatchObject({ kind: 'smtp', code: 250 });
    }
    // a body the inbound scan vouched for (relay/spool/wire-ready.ts) takes the unscanned path, over TLS too
    const plain = Buffer.from(PLAIN);
    markWireReady(plain);
    expect((await send(t, plain, plain.length)).get('b@x.example')).toMatchObject({
      kind: 'smtp',
      code: 250,
    });
    expect(p.messages.map((m) => [m.raw.toString('latin1'), m.secure, m.user])).toEqual([
      [BODY, true, 'relay'],
      [BODY, true, 'relay'],
      [PLAIN, true, 'relay'],
    ]);
    expect(p.auths.every((a) => a.secure)).toBe(true);
    expect(p.stats.connections).toBe(1);
  });

  it('a reused connection the server drops at MAIL FROM: not a byte was sent, so the pool sends on a new one', async () => {
    const { p, t } = await open();
    p.behaviour.dropAtMail = (n) => n === 2;
    expect((await send(t, Buffer.from(BODY), BODY.length)).get('b@x.example')).toMatchObject({ code: 250 });
    expect((await send(t, Buffer.from(BODY), BODY.length)).get('b@x.example')).toMatchObject({ code: 250 });
    expect(p.messages).toHaveLength(2);
    expect(p.stats.connections).toBe(2);
  });

  it('a reused connection dropped after the body arrived: the pool does not send it again (the engine retries later)', async () => {
    const { p, t } = await open();
    expect((await send(t, Buffer.from(BODY), BODY.length)).get('b@x.example')).toMatchObject({ code: 250 });
    p.behaviour.dropAfterData = true;
    const reply = (await send(t, Buffer.from(BODY), BODY.length)).get('b@x.example');
    expect(reply?.kind).toBe('network');
    expect(p.stats.bodies).toBe(2);
    expect(p.messages).toHaveLength(1);
    expect(p.stats.connections).toBe(1);
  });
});
