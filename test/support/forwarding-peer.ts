// The "old server" of the behind-the-old-server setup, misconfigured the way that loops: an smtp-server that accepts
// every message, prepends its own Received: header (as any MTA does) and forwards it, with the same envelope, to a
// smarthost (the relay). What it received and how each forward was answered are recorded.
// `exempt(msg)` models the fix: a message it returns true for is stored (the mailbox) instead of forwarded.
import type { AddressInfo } from 'node:net';
import nodemailer from 'nodemailer';
import { SMTPServer } from 'smtp-server';

export interface ForwardedMessage {
  mailFrom: string;
  rcptTo: string[];
  raw: Buffer;
}

export interface ForwardingPeer {
  readonly port: number;
  /** Every message received. */
  readonly received: ForwardedMessage[];
  /** Messages kept (not forwarded, because exempt). */
  readonly stored: ForwardedMessage[];
  /** The smarthost's answer to each forward, in order ("250 ..." or "554 5.4.6 ..."). */
  readonly forwards: string[];
  /** Points it at its smarthost (on 127.0.0.1), which may start after it: it forwards nothing before. */
  forwardTo(port: number): void;
  close(): Promise<void>;
}

export async function startForwardingPeer(opts: {
  name: string;
  /** Where it forwards to; or later, with forwardTo() (the peer listens first, so its port is never a guess). */
  smarthost?: { host: string; port: number };
  exempt?: (msg: ForwardedMessage) => boolean;
}): Promise<ForwardingPeer> {
  let target = opts.smarthost;
  const received: ForwardedMessage[] = [];
  const stored: ForwardedMessage[] = [];
  const forwards: string[] = [];
  let n = 0;
  let out: ReturnType<typeof nodemailer.createTransport> | undefined;
  const transport = (to: { host: string; port: number }): ReturnType<typeof nodemailer.createTransport> =>
    (out ??= nodemailer.createTransport({
      host: to.host,
      port: to.port,
      secure: false,
      ignoreTLS: true,
      name: opts.name,
    }));
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const msg: ForwardedMessage = {
          mailFrom: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
        };
        received.push(msg);
        cb(null); // accepted; forwarded afterwards, as a queueing MTA does
        if (opts.exempt?.(msg) === true) {
          stored.push(msg);
          return;
        }
        if (target === undefined) {
          forwards.push('no smarthost yet');
          return;
        }
        const stamp = `Received: from ${session.hostNameAppearsAs} ([${session.remoteAddress}])\r\n\tby ${opts.name} with ESMTP id F${++n};\r\n\tSat, 28 Nov 2026 10:00:00 +0000\r\n`;
        transport(target)
          .sendMail({
            envelope: { from: msg.mailFrom, to: msg.rcptTo },
            raw: Buffer.concat([Buffer.from(stamp, 'latin1'), msg.raw]),
          })
          .then(
            (info: { response: string }) => forwards.push(info.response),
            (err: { response?: string; message: string }) => forwards.push(err.response ?? err.message),
          );
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.on('error', () => undefined);
  const port = (server as unknown as { server: { address(): AddressInfo } }).server.address().port;
  return {
    port,
    received,
    stored,
    forwards,
    forwardTo(smarthostPort: number) {
      target = { host: '127.0.0.1', port: smarthostPort };
      out?.close();
      out = undefined;
    },
    async close() {
      out?.close();
      // smtp-server's close() waits for clients (a relay's pooled connection): end them
      const conns = (server as unknown as { connections?: Set<{ _socket?: { destroy(): void } }> })
        .connections;
      conns?.forEach((c) => c._socket?.destroy());
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
