// The STARTTLS certificate, read again while the relay runs. A certificate is renewed long before it expires
// (cert-manager renews a kubernetes.io/tls Secret a third of its lifetime early, and the kubelet updates the mounted
// files in place); a relay that read its files only at start served the old certificate until it was restarted, and
// once that one expired, every sender that checks the certificate (MTA-STS, DANE) stopped delivering.
//
// The files are read every intervalMs (polling, not inotify: the kubelet swaps a symlink to a new folder, and an
// editor or certbot may write a file in place, which a watch does not see the same way everywhere). A changed pair is
// checked before it is used: the certificate parses and the key matches it. A pair that fails is reported and the
// certificate in use stays (a renewal that writes the certificate and the key one after the other is caught at the
// next read, when both are new).
//
// Exports: checkTlsPair(pair) (pure: what the certificate is, or why the pair cannot be used), watchTlsFiles(opts).
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { safeDelay } from '../../routing/timer.ts';

export interface TlsPair {
  key: Buffer;
  cert: Buffer;
}

export interface TlsCertificateInfo {
  subject: string;
  notAfter: Date;
  fingerprint256: string;
}

/** What the pair's certificate is, or why the pair cannot be used (it does not parse, or the key does not match). */
export function checkTlsPair(pair: TlsPair): TlsCertificateInfo | string {
  let x: X509Certificate;
  try {
    x = new X509Certificate(pair.cert);
  } catch (err) {
    return `the certificate does not parse: ${err instanceof Error ? err.message : String(err)}`;
  }
  try {
    createSecureContext({ key: pair.key, cert: pair.cert });
  } catch (err) {
    return `the key does not go with the certificate: ${err instanceof Error ? err.message : String(err)}`;
  }
  return {
    subject: x.subject.replaceAll('\n', ', '),
    notAfter: x.validToDate,
    fingerprint256: x.fingerprint256,
  };
}

export interface TlsWatchOptions {
  certFile: string;
  keyFile: string;
  /** How often the files are read (0: never). */
  intervalMs: number;
  /** The pair in use (read at start). */
  current: TlsPair;
  /** A changed pair that passed checkTlsPair: use it from now on. */
  onChange: (pair: TlsPair, info: TlsCertificateInfo) => void;
  /** A changed pair that cannot be used, or files that cannot be read: the pair in use stays. Once per change. */
  onError: (problem: string) => void;
  read?: (file: string) => Promise<Buffer>;
}

export interface TlsWatch {
  /** Reads the files now (what the timer does); resolves once done. */
  check(): Promise<void>;
  stop(): void;
}

export function watchTlsFiles(o: TlsWatchOptions): TlsWatch {
  const read = o.read ?? ((f: string) => readFile(f));
  let current = o.current;
  /** The last problem reported, so that a pair that stays broken is reported once. */
  let reported: string | undefined;
  let running: Promise<void> | undefined;
  const same = (a: TlsPair, b: TlsPair): boolean => a.key.equals(b.key) && a.cert.equals(b.cert);
  const once = async (): Promise<void> => {
    let pair: TlsPair;
    try {
      const [cert, key] = await Promise.all([read(o.certFile), read(o.keyFile)]);
      pair = { cert, key };
    } catch (err) {
      const problem = `cannot read ${o.certFile} or ${o.keyFile}: ${err instanceof Error ? err.message : String(err)}`;
      if (problem !== reported) o.onError((reported = problem));
      return;
    }
    if (same(pair, current)) {
      reported = undefined;
      return;
    }
    const info = checkTlsPair(pair);
    if (typeof info === 'string') {
      if (info !== reported) o.onError((reported = info));
      return;
    }
    reported = undefined;
    current = pair;
    o.onChange(pair, info);
  };
  const check = (): Promise<void> =>
    (running ??= once().finally(() => {
      running = undefined;
    }));
  const timer = o.intervalMs > 0 ? setInterval(() => void check(), safeDelay(o.intervalMs)) : undefined;
  timer?.unref();
  return {
    check,
    stop: () => clearInterval(timer),
  };
}
