// The relay's outbound SMTP client (nodemailer's pool, patched) sends a body it holds in memory in one call
// (readSource's mailrouteBody, DataStream.encode) and streams a body from its file. Against a real smtp-server this
// checks that both arrive byte for byte, and that the pool still tells "not a byte sent" from "sent" when a server
// drops the connection: the first is requeued on a fresh connection, the second is never sent twice by the pool.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { nodemailerTransportFactory, type ServerTransport } from '../../relay/delivery/transport.ts';
import type { MessageBody } from '../../relay/spool/types.ts';

interface Received {
  raw: Buffer;
  connection: string;
}

/** smtp-server's own record of a connection (not in its types): the test drops the socket under a session. */
interface ServerConnection {
  id: string;
  _socket: Socket;
}

interface Peer {
  port: number;
  received: Received[];
  /** DATA transactions whose body arrived in full, answered or not. */
  bodies: number;
  connections: number;
  /** Called at MAIL FROM with the transaction's number on its connection; true drops the connection instead. */
  dropAtMail?: (transaction: number) => boolean;
  /** After the body arrived: true drops the connection instead of answering. */
  dropAfterData?: boolean;
  close(): Promise<void>;
}

async function startPeer(): Promise<Peer> {
  const perConnection = new Map<string, number>();
  const drop = (session: SMTPServerSession): void => {
    for (const c of (server as unknown as { connections: Set<ServerConnection> }).connections)
      if (c.id === session.id) c._socket.destroy();
  };
  const server: SMTPServer = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onConnect(_session, cb) {
      peer.connections++;
      cb();
    },
    onMailFrom(_address, session, cb) {
      const n = (perConnection.get(session.id) ?? 0) + 1;
      perConnection.set(session.id, n);
      if (peer.dropAtMail?.(n) === true) return drop(session);
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        peer.bodies++;
        if (peer.dropAfterData === true) return drop(session);
        peer.received.push({ raw: Buffer.concat(chunks), connection: session.id });
        cb(null);
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  const peer: Peer = {
    port: addr.port,
    received: [],
    bodies: 0,
    connections: 0,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  return peer;
}

const BODY =
  'From: <a@sender.example>\r\nTo: <b@x.example>\r\nSubject: t\r\n\r\n.a line that starts with a dot\r\n' +
  '.\r\n..\r\nlast line\r\n';

describe('outbound bodies (the patched nodemailer client against smtp-server)', () => {
  let peer: Peer | undefined;
  let transport: ServerTransport | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    transport?.close();
    await peer?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    peer = transport = dir = undefined;
  });

  const open = async (): Promise<{ p: Peer; t: ServerTransport }> => {
    const p = (peer = await startPeer());
    const t = (transport = nodemailerTransportFactory({ hostname: 'relay.test' })({
      host: '127.0.0.1',
      port: p.port,
      tls: 'None',
      maxConnections: 1,
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
    expect(p.received.map((r) => r.raw.toString('latin1'))).toEqual([BODY, BODY, big.toString('latin1')]);
    expect(new Set(p.received.map((r) => r.connection)).size).toBe(1); // one pooled connection
  });

  it('a reused connection the server drops at MAIL FROM: not a byte was sent, so the pool sends on a new one', async () => {
    const { p, t } = await open();
    p.dropAtMail = (n) => n === 2;
    expect((await send(t, Buffer.from(BODY), BODY.length)).get('b@x.example')).toMatchObject({ code: 250 });
    expect((await send(t, Buffer.from(BODY), BODY.length)).get('b@x.example')).toMatchObject({ code: 250 });
    expect(p.received).toHaveLength(2);
    expect(p.connections).toBe(2);
  });

  it('a reused connection dropped after the body arrived: the pool does not send it again (the engine retries later)', async () => {
    const { p, t } = await open();
    expect((await send(t, Buffer.from(BODY), BODY.length)).get('b@x.example')).toMatchObject({ code: 250 });
    p.dropAfterData = true;
    const reply = (await send(t, Buffer.from(BODY), BODY.length)).get('b@x.example');
    expect(reply?.kind).toBe('network');
    expect(p.bodies).toBe(2);
    expect(p.received).toHaveLength(1);
    expect(p.connections).toBe(1);
  });
});
