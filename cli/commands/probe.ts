// mailroute probe --url URL... [--all-addresses] [--min-addresses N] [--grep TEXT] [--timeout-ms MS]
// GETs each URL and fails (exit 1) unless every answer is 2xx. With --all-addresses the URL's host name is resolved
// to every address it has (a headless Service: one per relay pod) and each address is asked, so one command checks
// /readyz on every relay (the chart's `helm test`). --grep prints only the body lines that contain TEXT.
import { lookup } from 'node:dns/promises';
import { request } from 'node:http';
import { guard, parseFlags, UsageError } from './offline-common.ts';

const USAGE =
  'usage: mailroute probe --url URL... [--all-addresses] [--min-addresses N] [--grep TEXT] [--timeout-ms MS]\n';

export interface ProbeTarget {
  /** What the report names: the URL, and the address when the host was resolved. */
  label: string;
  /** Where to connect. */
  host: string;
  port: number;
  path: string;
  /** The Host header: the URL's host, so a virtual host sees the name it expects. */
  hostHeader: string;
}

/** One target per address (or the URL itself when there are no addresses given). Pure. */
export function probeTargets(raw: string, addresses?: readonly string[]): ProbeTarget[] {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`mailroute probe: --url: not a URL: ${raw}`);
  }
  if (url.protocol !== 'http:')
    throw new UsageError(`mailroute probe: --url: only http:// is supported: ${raw}`);
  const port = url.port === '' ? 80 : Number(url.port);
  const path = `${url.pathname}${url.search}`;
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (addresses === undefined) return [{ label: raw, host: hostname, port, path, hostHeader: url.host }];
  return addresses.map((a) => ({ label: `${raw} (${a})`, host: a, port, path, hostHeader: url.host }));
}

export interface ProbeAnswer {
  status?: number;
  body: string;
  error?: string;
}

/** A probe succeeded when it got a 2xx answer. */
export function probeOk(a: ProbeAnswer): boolean {
  return a.status !== undefined && a.status >= 200 && a.status < 300;
}

function get(t: ProbeTarget, timeoutMs: number): Promise<ProbeAnswer> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: t.host,
        port: t.port,
        path: t.path,
        method: 'GET',
        headers: { host: t.hostHeader },
        timeout: timeoutMs,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (body.length < 4 * 1024 * 1024) body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', (err) => resolve({ body, error: err.message }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ body: '', error: err.message }));
    req.end();
  });
}

export async function run(argv: string[]): Promise<number> {
  return guard('probe', USAGE, async () => {
    const { values } = parseFlags(
      argv,
      {
        url: { type: 'string', multiple: true },
        'all-addresses': { type: 'boolean' },
        'min-addresses': { type: 'string' },
        grep: { type: 'string' },
        'timeout-ms': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      'probe',
    );
    if (values.help === true) {
      process.stdout.write(USAGE);
      return 0;
    }
    const urls = values.url ?? [];
    if (urls.length === 0) throw new UsageError('mailroute probe: --url is required');
    const minAddresses = positiveInt(values['min-addresses'] ?? '1', '--min-addresses');
    const timeoutMs = positiveInt(values['timeout-ms'] ?? '5000', '--timeout-ms');
    let failed = 0;
    for (const raw of urls) {
      let targets = probeTargets(raw);
      if (values['all-addresses'] === true) {
        const host = targets[0]!.host;
        let addresses: string[];
        try {
          addresses = (await lookup(host, { all: true })).map((a) => a.address).sort();
        } catch (err) {
          process.stdout.write(
            `FAIL ${raw}: resolve ${host}: ${err instanceof Error ? err.message : String(err)}\n`,
          );
          failed++;
          continue;
        }
        if (addresses.length < minAddresses) {
          process.stdout.write(
            `FAIL ${raw}: ${host} has ${addresses.length} address(es), expected at least ${minAddresses}\n`,
          );
          failed++;
        }
        targets = probeTargets(raw, addresses);
      }
      for (const t of targets) {
        const a = await get(t, timeoutMs);
        const ok = probeOk(a);
        if (!ok) failed++;
        const what = a.error ?? String(a.status);
        if (values.grep !== undefined && ok) {
          process.stdout.write(`ok ${t.label}: ${what}\n`);
          for (const line of a.body.split('\n'))
            if (line.includes(values.grep)) process.stdout.write(`${line}\n`);
        } else {
          const body = ok ? '' : ` ${a.body.trim().slice(0, 500)}`;
          process.stdout.write(`${ok ? 'ok' : 'FAIL'} ${t.label}: ${what}${body}\n`);
        }
      }
    }
    if (failed > 0) process.stdout.write(`${failed} probe(s) failed\n`);
    return failed > 0 ? 1 : 0;
  });
}

function positiveInt(s: string, flag: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`mailroute probe: ${flag}: not a positive integer: ${s}`);
  return n;
}
