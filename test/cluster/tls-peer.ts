// Test-only: a self-signed certificate made with openssl, and a minimal smtp-server peer that offers STARTTLS
// with it (test/support/smtp-peer.ts disables STARTTLS on purpose).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';

export interface SelfSigned {
  key: string;
  cert: string;
}

/** A P-256 self-signed certificate for CN=localhost with SAN IP:127.0.0.1 and DNS:localhost, valid one day. */
export function makeSelfSigned(cn = 'localhost'): SelfSigned {
  const dir = mkdtempSync(join(tmpdir(), 'mailroute-cert-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '1',
        '-subj',
        `/CN=${cn}`,
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
      ],
      { stdio: 'ignore' },
    );
    return {
      key: readFileSync(join(dir, 'key.pem'), 'utf8'),
      cert: readFileSync(join(dir, 'cert.pem'), 'utf8'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface TlsPeer {
  port: number;
  close(): Promise<void>;
}

/** An SMTP server on 127.0.0.1 that advertises STARTTLS with the given certificate and accepts everything. */
export async function startTlsPeer(cert: SelfSigned, opts: { starttls?: boolean } = {}): Promise<TlsPeer> {
  const server = new SMTPServer({
    key: cert.key,
    cert: cert.cert,
    authOptional: true,
    disabledCommands: opts.starttls === false ? ['AUTH', 'STARTTLS'] : ['AUTH'],
    logger: false,
    onData(stream, _session, cb) {
      stream.resume();
      stream.on('end', () => cb(null));
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
