// The SMTP client side the relay's delivery, its recipient-verification callout (relay/inbound/callout.ts) and the
// operator's preflight acceptance step (operator/preflight/acceptance.ts) share, so that a server is spoken to the
// same way by all three: the nodemailer client options of a destination (TLS mode, certificate check, AUTH only
// over TLS), and one SMTP command with its reply.
//
// TLS modes: None = ignoreTLS; Opportunistic = STARTTLS when offered, no certificate check, plain text if the upgrade
// fails (with credentials and without allowPlaintextAuth: STARTTLS required, as AUTH goes only over TLS); Required =
// requireTLS, no check; RequiredVerify = requireTLS and the certificate must verify for the host; Implicit = TLS from
// the first byte (secure: true, port 465), no check.
import { isIP } from 'node:net';
import type SMTPConnection from 'nodemailer/lib/smtp-connection';
import { assertNever, type TlsMode } from '../routing/model.ts';

/** Where and how to connect to one SMTP server. */
export interface SmtpClientTarget {
  /** Where to connect: an address, or a host name, which nodemailer resolves. */
  host: string;
  /** The host name when host is its address: TLS SNI and certificate verification use it. */
  servername?: string;
  port: number;
  tls: TlsMode;
  auth?: { user: string; pass: string };
  /** true: AUTH may go without TLS. Otherwise, with auth, STARTTLS is required (tls Opportunistic) or nothing is sent (None). */
  allowPlaintextAuth?: boolean;
}

/**
 * Why AUTH must not be attempted to this server at all, or undefined. AUTH goes only over TLS unless the server says
 * allowPlaintextAuth: true (Postfix's smtp_sasl_tls_security_options = noplaintext). With tls None there is no TLS
 * to wait for: the attempt fails before connecting (compile refuses this combination; a table written before that
 * rule can still carry it). With tls Opportunistic, smtpClientOptions requires STARTTLS instead. Pure.
 */
export function plaintextAuthRefusal(
  target: Pick<SmtpClientTarget, 'tls' | 'allowPlaintextAuth'>,
  hasAuth: boolean,
): string | undefined {
  if (!hasAuth || target.allowPlaintextAuth === true || target.tls !== 'None') return undefined;
  return 'AUTH without TLS refused (tls None): set allowPlaintextAuth: true on the server to send the password in plain text';
}

export interface SmtpTimeouts {
  connectionMs: number;
  greetingMs: number;
  socketMs: number;
  /**
   * The wait for the reply to the final dot, when longer than socketMs (RFC 5321 §4.5.3.2.6: 10 minutes; Postfix's
   * smtp_data_done_timeout). The server may be delivering meanwhile: giving up early sends the message again later.
   */
  finalReplyMs?: number;
}

export const DEFAULT_TIMEOUTS: SmtpTimeouts = {
  connectionMs: 30_000,
  greetingMs: 60_000,
  socketMs: 300_000,
  finalReplyMs: 600_000,
};

/**
 * The nodemailer client options for one destination: host (and the name for TLS when host is an address), port, our
 * EHLO name, timeouts, TLS mode and credentials. The one place these are decided: the delivery pool
 * (relay/delivery/transport.ts) and the recipient-verification callout (relay/inbound/callout.ts) both start from it,
 * so a server is spoken to the same way by both. Pure.
 */
export function smtpClientOptions(
  target: SmtpClientTarget,
  settings: { hostname: string; timeouts: SmtpTimeouts },
): SMTPConnection.Options {
  // SNI and certificate checks use the host name; an IP address is no SNI name (RFC 6066)
  const tlsName = target.servername ?? (isIP(target.host) === 0 ? target.host : undefined);
  const tlsOptions = ((): SMTPConnection.Options => {
    switch (target.tls) {
      case 'None':
        return { secure: false, ignoreTLS: true };
      case 'Opportunistic':
        // With credentials, AUTH goes only over TLS: STARTTLS becomes required, so a server that does not offer it
        // (or fails the upgrade) fails the attempt with ETLS before AUTH, a temporary failure that is retried.
        if (target.auth !== undefined && target.allowPlaintextAuth !== true)
          return { secure: false, requireTLS: true, tls: { rejectUnauthorized: false } };
        return { secure: false, opportunisticTLS: true, tls: { rejectUnauthorized: false } };
      case 'Required':
        return { secure: false, requireTLS: true, tls: { rejectUnauthorized: false } };
      case 'RequiredVerify':
        return {
          secure: false,
          requireTLS: true,
          tls: { rejectUnauthorized: true, ...(tlsName !== undefined ? { servername: tlsName } : {}) },
        };
      case 'Implicit':
        // TLS from the first byte (port 465, RFC 8314); like Required, the certificate is not checked.
        return { secure: true, tls: { rejectUnauthorized: false } };
      default:
        return assertNever(target.tls, 'tls mode');
    }
  })();
  return {
    host: target.host,
    ...(target.servername !== undefined ? { servername: target.servername } : {}),
    port: target.port,
    name: settings.hostname,
    connectionTimeout: settings.timeouts.connectionMs,
    greetingTimeout: settings.timeouts.greetingMs,
    socketTimeout: settings.timeouts.socketMs,
    logger: false,
    ...(target.auth ? { auth: { user: target.auth.user, pass: target.auth.pass } } : {}),
    ...tlsOptions,
  };
}

// One SMTP command on a connected nodemailer SMTPConnection, and its reply. nodemailer has no public call for an
// envelope without DATA (MAIL FROM / RCPT TO / RSET alone), which the callout and the acceptance step need. This uses
// the same two internals SMTPConnection's own reset() uses (_sendCommand and _responseActions); a nodemailer upgrade
// that changes them fails test/relay/callout.test.ts and operator/preflight/acceptance.test.ts.
interface ConnectionInternals {
  _sendCommand(line: string): void;
  _responseActions: ((reply: string) => void)[];
}

/** Sends `line` and calls `onReply` with the whole reply (code first). Failures arrive as the connection's 'error'. */
export function queueSmtpCommand(conn: SMTPConnection, line: string, onReply: (reply: string) => void): void {
  const c = conn as unknown as ConnectionInternals;
  c._responseActions.push(onReply);
  c._sendCommand(line);
}

/** queueSmtpCommand as a promise that also rejects when the connection fails or closes before the reply. */
export function smtpCommand(conn: SMTPConnection, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => done(() => reject(err));
    const onEnd = (): void => done(() => reject(new Error('connection closed by the server')));
    const done = (then: () => void): void => {
      conn.off('error', onError);
      conn.off('end', onEnd);
      then();
    };
    conn.once('error', onError);
    conn.once('end', onEnd);
    queueSmtpCommand(conn, line, (reply) => done(() => resolve(reply)));
  });
}
