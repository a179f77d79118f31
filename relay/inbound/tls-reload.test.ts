import { describe, expect, it } from 'vitest';
import { makeSelfSigned } from '../../test/support/tls.ts';
import { waitFor } from '../../test/support/wait.ts';
import { checkTlsPair, watchTlsFiles, type TlsCertificateInfo, type TlsPair } from './tls-reload.ts';

const a = makeSelfSigned('relay-a.test');
const b = makeSelfSigned('relay-b.test');
const pair = (p: { key: string; cert: string }): TlsPair => ({
  key: Buffer.from(p.key),
  cert: Buffer.from(p.cert),
});

describe('checkTlsPair', () => {
  it('a certificate with its key: subject, expiry, fingerprint', () => {
    const info = checkTlsPair(pair(a));
    expect(typeof info).toBe('object');
    const i = info as TlsCertificateInfo;
    expect(i.subject).toBe('CN=relay-a.test');
    // makeSelfSigned: valid one day
    expect(i.notAfter.getTime() - Date.now()).toBeGreaterThan(23 * 3600_000);
    expect(i.notAfter.getTime() - Date.now()).toBeLessThan(25 * 3600_000);
    expect(i.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it.each([
    [
      'a certificate that does not parse',
      { key: a.key, cert: 'not a certificate' },
      /^the certificate does not parse: /,
    ],
    [
      'a key of another certificate',
      { key: b.key, cert: a.cert },
      /^the key does not go with the certificate: /,
    ],
    [
      'a key that does not parse',
      { key: 'garbage', cert: a.cert },
      /^the key does not go with the certificate: /,
    ],
  ])('%s', (_what, p, want) => {
    expect(checkTlsPair(pair(p))).toMatch(want);
  });
});

describe('watchTlsFiles', () => {
  const files = (): { files: Map<string, Buffer>; read: (f: string) => Promise<Buffer> } => {
    const m = new Map<string, Buffer>([
      ['cert.pem', Buffer.from(a.cert)],
      ['key.pem', Buffer.from(a.key)],
    ]);
    return {
      files: m,
      read: (f) => {
        const v = m.get(f);
        return v === undefined
          ? Promise.reject(
              Object.assign(new Error(`ENOENT: no such file or directory, open '${f}'`), { code: 'ENOENT' }),
            )
          : Promise.resolve(v);
      },
    };
  };

  /** A watcher of cert.pem and key.pem (pair a in use) over the files above: the subjects taken, the problems told. */
  const watcher = (intervalMs: number) => {
    const { files: m, read } = files();
    const changes: string[] = [];
    const problems: string[] = [];
    const w = watchTlsFiles({
      certFile: 'cert.pem',
      keyFile: 'key.pem',
      intervalMs,
      current: pair(a),
      read,
      onChange: (_p, info) => changes.push(info.subject),
      onError: (p) => problems.push(p),
    });
    return { w, m, changes, problems };
  };

  it('takes a new valid pair once, keeps the pair in use through a broken one, and reports each problem once', async () => {
    const { w, m, changes, problems } = watcher(0);
    await w.check();
    expect([changes, problems]).toEqual([[], []]); // unchanged

    m.set('cert.pem', Buffer.from(b.cert)); // the certificate written first, the key not yet
    await w.check();
    await w.check();
    expect(changes).toEqual([]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^the key does not go with the certificate/);

    m.set('key.pem', Buffer.from(b.key)); // now both
    await w.check();
    await w.check();
    expect(changes).toEqual(['CN=relay-b.test']);

    m.delete('key.pem'); // a file gone: reported once, the pair in use stays
    await w.check();
    await w.check();
    expect(problems).toHaveLength(2);
    expect(problems[1]).toMatch(/^cannot read cert\.pem or key\.pem: ENOENT/);
    m.set('key.pem', Buffer.from(b.key)); // back as it was: nothing to change
    await w.check();
    expect(changes).toEqual(['CN=relay-b.test']);
    w.stop();
  });

  it('reads on its own every intervalMs', async () => {
    const { w, m, changes } = watcher(20);
    try {
      m.set('cert.pem', Buffer.from(b.cert));
      m.set('key.pem', Buffer.from(b.key));
      await waitFor(() => changes.length === 1, { timeoutMs: 2000, what: 'the timer to take the new pair' });
      expect(changes).toEqual(['CN=relay-b.test']);
    } finally {
      w.stop();
    }
  });
});
