// `mailroute preflight` through the real bin, against real smtp-server peers on 127.0.0.1: one requiring STARTTLS
// and AUTH (credentials from a Secret among the manifests), one refusing the probe RCPT with 550, one whose
// certificate does not verify. Exit 0 only when every server passes; the report names the address to allowlist.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAcceptancePeers, type AcceptancePeers } from '../support/acceptance-peers.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { makeSelfSigned, type SelfSigned } from '../support/tls.ts';

const root = join(import.meta.dirname, '..', '..');
const nodeBin = join(root, 'node_modules', '.bin', 'node');
const mailroute = join(root, 'bin', 'mailroute.js');

function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      nodeBin,
      [mailroute, 'preflight', ...args],
      { cwd: root, timeout: 60_000 },
      (err, stdout, stderr) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
      },
    );
  });
}

const tmp = mkdtempSync(join(tmpdir(), 'mailroute-preflight-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('mailroute preflight', () => {
  let cert: SelfSigned;
  let google: SmtpPeer; // STARTTLS + AUTH required
  let zoho: SmtpPeer; // refuses the probe address until the relay is allowlisted
  let legacy: SmtpPeer; // a certificate for another name
  let peers: AcceptancePeers;
  const caFile = join(tmp, 'ca.pem');

  const manifests = (dir: string, password: string): string => {
    const file = join(tmp, `${dir}.yaml`);
    writeFileSync(
      file,
      `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: example-com, namespace: mail}
spec:
  domain: example.com
  servers:
    - {name: google, host: 127.0.0.1, port: ${google.port}, tls: RequiredVerify, authSecretRef: {name: google-relay}}
    - {name: zoho, host: 127.0.0.1, port: ${zoho.port}, tls: Required, probe: {address: pilot@example.com}}
---
apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: legacy-example, namespace: mail}
spec:
  domain: legacy.example
  servers:
    - {name: legacy, host: 127.0.0.1, port: ${legacy.port}, tls: RequiredVerify}
---
apiVersion: v1
kind: Secret
metadata: {name: google-relay, namespace: mail, labels: {mailroute.io/smtp-auth: "true"}}
stringData: {username: relay, password: ${password}}
`,
    );
    return file;
  };

  beforeAll(async () => {
    cert = makeSelfSigned();
    writeFileSync(caFile, cert.cert);
    peers = await startAcceptancePeers(cert);
    ({ google, zoho } = peers);
    legacy = await startSmtpPeer('legacy', {}, undefined, { tls: makeSelfSigned('mx.elsewhere.example') });
  });
  afterAll(async () => {
    await Promise.all([peers?.close(), legacy?.close()]);
  });

  it('reports each server: AUTH ok, the probe refused with 550, a certificate that does not verify; exit 1', async () => {
    peers.allowlisted = false;
    const r = await run('-f', manifests('all', 's3cret'), '--ca', caFile, '--hostname', 'relay.test');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1);
    const blocks = r.stdout.split(/\n(?=\S)/);
    expect(blocks[0]).toMatch(
      new RegExp(
        `^example\\.com google \\(127\\.0\\.0\\.1:${google.port}, tls RequiredVerify\\): ok\n` +
          '  from 127\\.0\\.0\\.1 \\(the address google must accept mail from\\)\n' +
          '  220 .*; EHLO ok; STARTTLS ok \\(TLSv1\\.[23], certificate verified\\)\n' +
          '  AUTH: ok: AUTH as relay ok$',
      ),
    );
    expect(blocks[1]).toMatch(
      new RegExp(
        `^example\\.com zoho \\(127\\.0\\.0\\.1:${zoho.port}, tls Required\\): FAIL\n` +
          '  from 127\\.0\\.0\\.1 \\(the address zoho must accept mail from\\)\n' +
          '  .*STARTTLS ok.*\n' +
          '  probe RCPT TO:<pilot@example\\.com>: refused: 550 5\\.7\\.1 relay not allowlisted$',
      ),
    );
    expect(blocks[2]).toMatch(/^legacy\.example legacy \(127\.0\.0\.1:\d+, tls RequiredVerify\): FAIL\n/);
    expect(blocks[2]).toMatch(/STARTTLS handshake: .*(certificate|self.signed|altnames)/i);
    expect(blocks[3]).toBe('3 servers: 1 ok, 2 failed\n');
  });

  it('--probe ADDRESS probes every selected server; --send delivers a marked probe message; exit 0 when all pass', async () => {
    peers.allowlisted = true;
    const r = await run(
      '-f',
      manifests('all', 's3cret'),
      '--ca',
      caFile,
      '--domain',
      'example.com',
      '--probe',
      'alice@example.com',
      '--send',
      '-o',
      'json',
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as {
      probeId: string;
      servers: {
        server: string;
        ok: boolean;
        localAddress: string;
        tlsMode: string;
        tls: string;
        acceptance: { result: string; sent: string };
      }[];
    };
    expect(j.probeId).toMatch(/^mailroute-[0-9a-z]+-[0-9a-f]{8}$/);
    expect(
      j.servers.map((s) => [s.server, s.ok, s.localAddress, s.tlsMode, s.tls, s.acceptance.result]),
    ).toEqual([
      ['google', true, '127.0.0.1', 'RequiredVerify', 'ok', 'accepted'],
      ['zoho', true, '127.0.0.1', 'Required', 'ok', 'accepted'],
    ]);
    for (const peer of [google, zoho]) {
      const m = peer.for('alice@example.com').at(-1);
      expect(m?.raw.toString()).toContain(`X-Mailroute-Probe: ${j.probeId}\r\n`);
      expect(m?.secure).toBe(true);
    }
    expect(google.for('alice@example.com').at(-1)?.user).toBe('relay');
  });

  it('a wrong password in the Secret fails that server at AUTH', async () => {
    const r = await run('-f', manifests('wrong', 'nope'), '--ca', caFile, '--server', 'google');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/\n {2}AUTH: failed: AUTH: .*535/);
    expect(r.stdout).toContain('1 server: 0 ok, 1 failed');
  });

  it('usage and manifest errors exit 2', async () => {
    expect((await run('-f', manifests('all', 's3cret'), '--probe', 'not an address')).code).toBe(2);
    const bad = join(tmp, 'bad.yaml');
    writeFileSync(
      bad,
      'apiVersion: mailroute.io/v1alpha1\nkind: MailDomain\nmetadata: {name: x}\nspec: {domain: x.example, servers: [{name: a, host: h, tls: Sometimes}]}\n',
    );
    const r = await run('-f', bad);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.yaml: MailDomain\/x: spec\.servers\[0\]\.tls: must be one of/);
    const none = await run('-f', manifests('all', 's3cret'), '--server', 'nosuch');
    expect(none.code).toBe(2);
    expect(none.stderr).toBe('mailroute preflight: no MailDomain server matches\n');
  });
});
