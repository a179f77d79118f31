// The two servers of the preflight acceptance suites (the CLI's `mailroute preflight` and the operator's periodic
// probe): `google` requires STARTTLS before AUTH (user relay, password s3cret), `zoho` offers STARTTLS and refuses
// every RCPT TO with 550 until the test sets `allowlisted` (the secondary that has not allowlisted the relay yet).
import { startSmtpPeer, type SmtpPeer } from './smtp-peer.ts';
import type { SelfSigned } from './tls.ts';

export interface AcceptancePeers {
  google: SmtpPeer;
  zoho: SmtpPeer;
  /** zoho accepts RCPT TO while this is true. */
  allowlisted: boolean;
  close(): Promise<void>;
}

export async function startAcceptancePeers(cert: SelfSigned): Promise<AcceptancePeers> {
  const google = await startSmtpPeer('google', {}, undefined, {
    tls: cert,
    auth: { user: 'relay', pass: 's3cret' },
    authRequiresTls: true,
  });
  const peers: AcceptancePeers = {
    google,
    zoho: google, // replaced below
    allowlisted: false,
    close: () => Promise.all([google.close(), peers.zoho.close()]).then(() => undefined),
  };
  peers.zoho = await startSmtpPeer(
    'zoho',
    { rcpt: () => (peers.allowlisted ? undefined : { code: 550, message: '5.7.1 relay not allowlisted' }) },
    undefined,
    { tls: cert },
  );
  return peers;
}
