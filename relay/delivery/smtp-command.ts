// One SMTP command on a connected nodemailer SMTPConnection, and its reply. nodemailer has no public call for an
// envelope without DATA (MAIL FROM / RCPT TO / RSET alone), which the recipient-verification callout
// (relay/inbound/callout.ts) and the preflight's acceptance step (operator/preflight/acceptance.ts) need. This uses
// the same two internals SMTPConnection's own reset() uses (_sendCommand and _responseActions); a nodemailer
// upgrade that changes them fails test/relay/callout.test.ts and operator/preflight/acceptance.test.ts.
import type SMTPConnection from 'nodemailer/lib/smtp-connection';

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
