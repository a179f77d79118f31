// The SMTP client a draining relay hands messages to a peer with (drain.ts): one nodemailer SMTPConnection per
// message, STARTTLS when offered (no certificate check, as for any peer relay), and the hand-off parameters of
// relay/inbound/handoff.ts on MAIL FROM and on each RCPT TO.
//
// nodemailer's client has no way to add ESMTP parameters of our own, so the command line is extended where the
// connection writes it (SMTPConnection#_sendCommand, nodemailer 10.6.1, pinned by patches/nodemailer+10.6.1.patch).
// If a nodemailer upgrade removes that method, the constructor throws and the drain logs it for every message, which
// then stays spooled: it never hands over a message without its parameters. test/relay/drain-handoff.test.ts checks
// that the parameters arrive.
import { domainToASCII } from 'node:url';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { LegRole } from '../../routing/model.ts';
import type { AttemptReply } from '../delivery/outcome.ts';
import { readSource, repliesFromNodemailer, type SendRequest } from '../delivery/transport.ts';
import { LEGS_PARAM, ORIGIN_PARAM, formatLegRoles, formatOrigin, type Origin } from '../inbound/handoff.ts';

interface HandoffRequest extends SendRequest {
  origin: Origin;
  /** recipient (as in `to`) -> roles of its legs still open here */
  roles: ReadonlyMap<string, readonly LegRole[]>;
}

export interface HandoffTransport {
  /** One SMTP transaction; never rejects: every recipient of req.to gets a reply. */
  send(req: HandoffRequest): Promise<Map<string, AttemptReply>>;
  close(): void;
}

export type HandoffTransportFactory = (peer: { host: string; port: number }) => HandoffTransport;

export interface HandoffTransportOptions {
  /** EHLO name. */
  hostname: string;
  timeouts?: { connectionMs?: number; greetingMs?: number; socketMs?: number };
}

/** Lowercase, with the domain in A-labels: how an envelope address is matched against the command nodemailer wrote. */
function addressKey(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return address.toLowerCase();
  const domain = address.slice(at + 1);
  return `${address.slice(0, at)}@${domainToASCII(domain) || domain}`.toLowerCase();
}

/** Pure: the command line with the hand-off parameter it needs (MAIL FROM: origin; RCPT TO: the open roles). */
export function withHandoffParams(line: string, origin: string, roles: ReadonlyMap<string, string>): string {
  if (/^MAIL FROM:/i.test(line)) return `${line} ${ORIGIN_PARAM}=${origin}`;
  const m = /^RCPT TO:<([^>]*)>/i.exec(line);
  if (m) {
    // A recipient the request did not list (cannot happen) gets a value the peer refuses (501), rather than no
    // parameter, which would make the peer plan all of its legs.
    return `${line} ${LEGS_PARAM}=${roles.get(addressKey(m[1] ?? '')) ?? 'none'}`;
  }
  return line;
}

interface CommandWriter {
  _sendCommand?: (str: string, logStr?: string) => void;
}

export function handoffTransportFactory(opts: HandoffTransportOptions): HandoffTransportFactory {
  return (peer) => {
    const open = new Set<SMTPConnection>();
    return {
      async send(req) {
        const roles = new Map([...req.roles].map(([r, list]) => [addressKey(r), formatLegRoles(list)]));
        const origin = formatOrigin(req.origin);
        const conn = new SMTPConnection({
          host: peer.host,
          port: peer.port,
          secure: false,
          opportunisticTLS: true,
          tls: { rejectUnauthorized: false },
          name: opts.hostname,
          connectionTimeout: opts.timeouts?.connectionMs ?? 5_000,
          greetingTimeout: opts.timeouts?.greetingMs ?? 10_000,
          socketTimeout: opts.timeouts?.socketMs ?? 30_000,
          logger: false,
        });
        const writer = conn as unknown as CommandWriter;
        const write = writer._sendCommand;
        if (typeof write !== 'function') {
          const text =
            'hand-off: this nodemailer cannot add ESMTP parameters (SMTPConnection#_sendCommand is gone)';
          return new Map(req.to.map((r) => [r, { kind: 'local', text } as const]));
        }
        writer._sendCommand = (str, logStr) =>
          write.call(conn, withHandoffParams(str, origin, roles), logStr);
        open.add(conn);
        try {
          await new Promise<void>((resolve, reject) => {
            conn.once('error', reject);
            conn.connect(() => {
              conn.removeListener('error', reject);
              resolve();
            });
          });
          return await new Promise<Map<string, AttemptReply>>((resolve) => {
            // Errors after the handshake are reported to send's callback; keep 'error' from being unhandled.
            conn.on('error', () => undefined);
            conn.send(
              { from: req.from, to: req.to, ...(req.size ? { size: req.size } : {}) },
              readSource(req.raw),
              (err, info) => resolve(repliesFromNodemailer(req.to, err, info)),
            );
          });
        } catch (err) {
          return repliesFromNodemailer(req.to, err as Error, undefined);
        } finally {
          open.delete(conn);
          conn.quit();
        }
      },
      close() {
        for (const c of open) c.close();
        open.clear();
      },
    };
  };
}
