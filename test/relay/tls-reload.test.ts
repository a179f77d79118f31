// A renewed STARTTLS certificate is used without a restart. The files are laid out as the kubelet mounts a
// kubernetes.io/tls Secret (tls.crt -> ..data/tls.crt, ..data -> a timestamped folder) and renewed as the kubelet
// renews them (a new folder, then ..data swapped to it in one rename), as cert-manager's renewal reaches a pod. A new
// STARTTLS session gets the new certificate within --tls-reload-interval; a pair whose key does not match is refused
// with an error, and the certificate in use stays.
import { mkdir, rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSelfSigned, type SelfSigned } from '../support/tls.ts';
import { waitFor } from '../support/wait.ts';
import { RawSmtp } from './raw-client.ts';
import {
  dualDomain,
  httpGet,
  loopbackRelayArgs,
  metricValue,
  spawnRelay,
  tempDir,
  writeManifests,
  type RelayChild,
} from './relay-harness.ts';

/** The SHA-256 fingerprint of the certificate a new STARTTLS session is given. */
async function servedFingerprint(port: number): Promise<string> {
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    const go = await c.cmd('STARTTLS');
    if (!go.startsWith('220')) throw new Error(`STARTTLS: ${go}`);
    c.socket.removeAllListeners('data');
    return await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ socket: c.socket, rejectUnauthorized: false, servername: 'localhost' }, () => {
        const fp = s.getPeerX509Certificate()?.fingerprint256 ?? '';
        s.destroy();
        resolve(fp);
      });
      s.once('error', reject);
    });
  } finally {
    c.close();
  }
}

const fingerprint = (p: SelfSigned): string => new X509Certificate(p.cert).fingerprint256;

describe('STARTTLS certificate renewal', () => {
  const a = makeSelfSigned('relay-a.test');
  const b = makeSelfSigned('relay-b.test');
  let relay: RelayChild;
  let mount: string;
  let generation = 0;
  /** A new timestamped folder with the pair, then ..data swapped to it: the kubelet's update of a Secret volume. */
  const publish = async (cert: string, key: string): Promise<void> => {
    const folder = `..2026_12_06_renewal_${++generation}`;
    await mkdir(join(mount, folder));
    await writeFile(join(mount, folder, 'tls.crt'), cert);
    await writeFile(join(mount, folder, 'tls.key'), key);
    await symlink(folder, join(mount, '..data_tmp'));
    await rename(join(mount, '..data_tmp'), join(mount, '..data'));
  };

  beforeAll(async () => {
    const dir = await tempDir('tls-reload');
    mount = join(dir, 'tls');
    await mkdir(mount);
    await publish(a.cert, a.key);
    await symlink('..data/tls.crt', join(mount, 'tls.crt'));
    await symlink('..data/tls.key', join(mount, 'tls.key'));
    await writeManifests(join(dir, 'manifests'), { 'd.yaml': dualDomain('tls.test', 1, 2) });
    relay = await spawnRelay(
      loopbackRelayArgs(dir, [
        '--tls-cert',
        join(mount, 'tls.crt'),
        '--tls-key',
        join(mount, 'tls.key'),
        '--tls-reload-interval',
        '200ms',
      ]),
    );
  });
  afterAll(() => relay?.kill('SIGKILL'));

  const notAfter = async (): Promise<number | undefined> =>
    metricValue(
      (await httpGet(relay.httpPort, '/metrics')).body,
      'mailroute_tls_certificate_not_after_seconds',
    );

  it('serves the renewed certificate to new sessions, and keeps it when the next pair does not match', async () => {
    expect(await servedFingerprint(relay.smtpPort)).toBe(fingerprint(a));
    const aExpires = Math.floor(new X509Certificate(a.cert).validToDate.getTime() / 1000);
    expect(await notAfter()).toBe(aExpires);

    await publish(b.cert, b.key);
    await waitFor(async () => (await servedFingerprint(relay.smtpPort)) === fingerprint(b), {
      timeoutMs: 5000,
      what: 'the renewed certificate on a new STARTTLS session',
    });
    expect(await notAfter()).toBe(Math.floor(new X509Certificate(b.cert).validToDate.getTime() / 1000));
    expect(
      relay.logs.some((l) => l.includes('"tls: certificate reloaded"') && l.includes('relay-b.test')),
    ).toBe(true);

    // a broken renewal: a's certificate with b's key
    await publish(a.cert, b.key);
    await waitFor(
      () => relay.logs.some((l) => l.includes('cannot be used; keeping the certificate in use')),
      {
        timeoutMs: 5000,
        what: 'the refused pair logged',
      },
    );
    expect(await servedFingerprint(relay.smtpPort)).toBe(fingerprint(b));
    expect(relay.proc.exitCode).toBeNull();
  });

  it('SIGHUP reads the files at once (here with no timer: --tls-reload-interval 0) and does not end the relay', async () => {
    const dir = await tempDir('tls-hup');
    const files = join(dir, 'tls');
    await mkdir(files);
    await writeFile(join(files, 'tls.crt'), a.cert);
    await writeFile(join(files, 'tls.key'), a.key);
    await writeManifests(join(dir, 'manifests'), { 'd.yaml': dualDomain('tls.test', 1, 2) });
    const r = await spawnRelay(
      loopbackRelayArgs(dir, [
        '--tls-cert',
        join(files, 'tls.crt'),
        '--tls-key',
        join(files, 'tls.key'),
        '--tls-reload-interval',
        '0',
      ]),
    );
    try {
      expect(await servedFingerprint(r.smtpPort)).toBe(fingerprint(a));
      // certbot's way: each file rewritten in place
      await writeFile(join(files, 'tls.crt'), b.cert);
      await writeFile(join(files, 'tls.key'), b.key);
      r.kill('SIGHUP');
      await waitFor(async () => (await servedFingerprint(r.smtpPort)) === fingerprint(b), {
        timeoutMs: 5000,
        what: 'the certificate read again on SIGHUP',
      });
      expect(r.proc.exitCode).toBeNull();
      expect(r.logs.some((l) => l.includes('"SIGHUP: reading the TLS files now'))).toBe(true);
      // and a SIGTERM still stops it gracefully
      r.kill('SIGTERM');
      expect(await r.exited).toBe(0);
    } finally {
      r.kill('SIGKILL');
    }
  });

  it('with --workers 2, SIGHUP to the primary is passed on to each worker, and nothing ends', async () => {
    const dir = await tempDir('tls-hup-workers');
    await writeManifests(join(dir, 'manifests'), { 'd.yaml': dualDomain('tls.test', 1, 2) });
    const r = await spawnRelay(loopbackRelayArgs(dir, ['--workers', '2']));
    try {
      r.kill('SIGHUP');
      await waitFor(
        () => r.logs.filter((l) => l.includes('"SIGHUP: reading the TLS files now')).length === 2,
        {
          timeoutMs: 5000,
          what: 'both workers to log the SIGHUP',
        },
      );
      expect(r.logs.some((l) => l.includes('"SIGHUP: passed on to the workers"'))).toBe(true);
      expect(r.proc.exitCode).toBeNull();
      const c = await RawSmtp.connect(r.smtpPort);
      expect(await c.reply()).toMatch(/^220 /);
      c.close();
      r.kill('SIGTERM');
      expect(await r.exited).toBe(0);
    } finally {
      r.kill('SIGKILL');
    }
  });

  it('a pair that does not match at start: the relay does not start, and says which flags', async () => {
    const dir = await tempDir('tls-mismatch');
    await writeFile(join(dir, 'tls.crt'), a.cert);
    await writeFile(join(dir, 'tls.key'), b.key);
    await writeManifests(join(dir, 'manifests'), { 'd.yaml': dualDomain('tls.test', 1, 2) });
    const err = await spawnRelay(
      loopbackRelayArgs(dir, ['--tls-cert', join(dir, 'tls.crt'), '--tls-key', join(dir, 'tls.key')]),
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    // exit 1 before it started, its output naming the two flags
    expect((err as Error).message).toMatch(/^relay exited \(1\) before it started:/);
    expect((err as Error).message).toMatch(/--tls-cert\/--tls-key: the key does not go with the certificate/);
  });
});
