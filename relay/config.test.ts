import { describe, expect, it } from 'vitest';
import { parseHostPort, parseRelayConfig, relayUsage } from './config.ts';
import { checkDestination } from '../routing/destinations.ts';

const ok = (argv: string[], env: Record<string, string> = {}) => {
  const r = parseRelayConfig(argv, env);
  if (r.ok !== true) throw new Error(`expected ok, got ${JSON.stringify(r)}`);
  return r.config;
};
const err = (argv: string[], env: Record<string, string> = {}): string => {
  const r = parseRelayConfig(argv, env);
  if (r.ok !== false) throw new Error(`expected an error, got ${JSON.stringify(r)}`);
  return r.error;
};

describe('relay config', () => {
  it('destination policy: standalone permits loopback unless told; --configmap denies the cluster defaults', () => {
    const standalone = ok(['--manifests', 'dir']).destinations;
    expect(checkDestination(standalone, '127.0.0.1').permitted).toBe(true);
    const denied = ok(['--routing-file', 'f.json', '--deny-destinations', '127.0.0.0/8,::1']).destinations;
    expect(checkDestination(denied, '127.0.0.1').permitted).toBe(false);
    expect(checkDestination(denied, '169.254.169.254').permitted).toBe(true);
    const cluster = ok(['--configmap', 'ns/cm']).destinations;
    for (const a of ['127.0.0.1', '::1', '169.254.169.254', 'fe80::1', '0.0.0.0']) {
      expect(checkDestination(cluster, a).permitted, a).toBe(false);
    }
    const clusterExtra = ok(['--configmap', 'ns/cm', '--deny-destinations', '10.96.0.0/12'], {
      MAILROUTE_ALLOW_DESTINATIONS: '127.0.0.1',
    }).destinations;
    expect(checkDestination(clusterExtra, '10.96.0.10').permitted).toBe(false);
    expect(checkDestination(clusterExtra, '127.0.0.1').permitted).toBe(true);
    expect(checkDestination(clusterExtra, '169.254.169.254').permitted).toBe(false);
    expect(err(['--manifests', 'd', '--deny-destinations', '10.0.0.0/8,2130706433'])).toMatch(
      /^--deny-destinations: "2130706433" is not an IP address or CIDR/,
    );
    expect(err(['--manifests', 'd', '--allow-destinations', '::/200'])).toMatch(/^--allow-destinations: /);
  });

  it('defaults (docs/design.md §3) and a frozen result', () => {
    const c = ok(['--manifests', 'dir']);
    expect(c.source).toEqual({
      kind: 'manifests',
      dir: 'dir',
      limits: { maxFileBytes: 4 * 1024 * 1024, maxTotalBytes: 16 * 1024 * 1024 },
    });
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 2525 });
    expect(c.http).toEqual({ host: '0.0.0.0', port: 9090 });
    expect(c.admin).toEqual({ host: '127.0.0.1', port: 9091 });
    expect(c.maxMessageSize).toBe(26214400);
    expect(c.retryScheduleMs).toEqual([60_000, 300_000, 900_000, 3_600_000]);
    expect(c.maxQueueLifetimeMs).toBe(5 * 86_400_000);
    expect(c.bareLf).toBe('reject');
    expect(c.tls).toBeUndefined();
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.listen)).toBe(true);
    expect(Object.isFrozen(c.retryScheduleMs)).toBe(true);
  });

  it('reads MAILROUTE_<FLAG>; a flag wins over the environment', () => {
    const env = {
      MAILROUTE_ROUTING_FILE: '/t.json',
      MAILROUTE_MAX_MESSAGE_SIZE: '2048',
      MAILROUTE_BARE_LF: 'normalize',
    };
    const c = ok([], env);
    expect(c.source).toEqual({ kind: 'routing-file', file: '/t.json' });
    expect(c.maxMessageSize).toBe(2048);
    expect(c.bareLf).toBe('normalize');
    expect(ok(['--max-message-size', '4096'], env).maxMessageSize).toBe(4096);
  });

  const bad: [string[], RegExp][] = [
    [[], /--manifests: one routing source is required/],
    [['--manifests', 'a', '--routing-file', 'b'], /only one routing source/],
    [
      ['--manifests', 'a', '--listen', 'nope'],
      /^--listen: must be HOST:PORT with a port from 0 to 65535 \(0: any free port\) \(got "nope"\)/,
    ],
    [['--manifests', 'a', '--listen', '1.2.3.4:70000'], /^--listen: /],
    [['--manifests', 'a', '--max-message-size', '10k'], /^--max-message-size: must be an integer/],
    [['--manifests', 'a', '--retry-schedule', '1m,,5m'], /^--retry-schedule: /],
    [['--manifests', 'a', '--max-queue-lifetime', 'forever'], /^--max-queue-lifetime: must be a duration/],
    [['--manifests', 'a', '--tls-cert', 'c.pem'], /^--tls-key: --tls-cert and --tls-key go together/],
    [['--manifests', 'a', '--bare-lf', 'allow'], /^--bare-lf: must be one of reject, normalize/],
    [['--manifests', 'a', '--max-recipients', '0'], /^--max-recipients: must be an integer >= 1/],
    [['--manifests', 'a', '--configmap', 'x'], /^--configmap: |only one routing source/],
    [['--manifests', 'a', '--log-level', 'loud'], /^--log-level: /],
    [['--manifests', 'a', '--bogus'], /Unknown option '--bogus'/],
    [['--manifests', 'a', '--dsn-relay', 'smarthost'], /^--dsn-relay: must be HOST:PORT/],
  ];

  it('--cluster-id / MAILROUTE_CLUSTER_ID: the trace name; default the --hostname; a bad value names the flag', () => {
    expect(ok(['--manifests', 'd', '--hostname', 'mx1.example.com']).clusterId).toBe('mx1.example.com');
    expect(ok(['--manifests', 'd'], { MAILROUTE_CLUSTER_ID: 'mailroute.mail' }).clusterId).toBe(
      'mailroute.mail',
    );
    expect(err(['--manifests', 'd', '--cluster-id', 'a b'])).toMatch(/^--cluster-id: .*\(got "a b"\)/);
    expect(err(['--manifests', 'd', '--cluster-id', 'x)'])).toMatch(/^--cluster-id: /);
  });

  it('--client-ipv6-prefix / MAILROUTE_CLIENT_IPV6_PREFIX: default 64, 0 to 128, a bad value names the flag', () => {
    expect(ok(['--manifests', 'd']).clientIpv6Prefix).toBe(64);
    expect(ok(['--manifests', 'd', '--client-ipv6-prefix', '128']).clientIpv6Prefix).toBe(128);
    expect(ok(['--manifests', 'd'], { MAILROUTE_CLIENT_IPV6_PREFIX: '48' }).clientIpv6Prefix).toBe(48);
    expect(ok(['--manifests', 'd', '--client-ipv6-prefix', '0']).clientIpv6Prefix).toBe(0);
    expect(err(['--manifests', 'd', '--client-ipv6-prefix', '129'])).toMatch(
      /^--client-ipv6-prefix: must be an integer from 0 to 128 \(got "129"\)/,
    );
    expect(err(['--manifests', 'd', '--client-ipv6-prefix', '/64'])).toMatch(/^--client-ipv6-prefix: /);
  });

  it('--max-recipients-in-flight / MAILROUTE_MAX_RECIPIENTS_IN_FLIGHT: default 50000, at least --max-recipients; a bad value names the flag', () => {
    expect(ok(['--manifests', 'd']).maxRecipientsInFlight).toBe(50_000);
    expect(ok(['--manifests', 'd', '--max-recipients-in-flight', '2000']).maxRecipientsInFlight).toBe(2000);
    expect(
      ok(['--manifests', 'd'], { MAILROUTE_MAX_RECIPIENTS_IN_FLIGHT: '1000' }).maxRecipientsInFlight,
    ).toBe(1000);
    // a flag wins over the environment
    expect(
      ok(['--manifests', 'd', '--max-recipients-in-flight', '3000'], {
        MAILROUTE_MAX_RECIPIENTS_IN_FLIGHT: '1000',
      }).maxRecipientsInFlight,
    ).toBe(3000);
    expect(
      ok(['--manifests', 'd', '--max-recipients', '5', '--max-recipients-in-flight', '5']),
    ).toMatchObject({
      maxRecipients: 5,
      maxRecipientsInFlight: 5,
    });
    expect(err(['--manifests', 'd', '--max-recipients-in-flight', '0'])).toBe(
      '--max-recipients-in-flight: must be an integer >= 1 (got "0")',
    );
    expect(err(['--manifests', 'd', '--max-recipients-in-flight', '50k'])).toBe(
      '--max-recipients-in-flight: must be an integer >= 1 (got "50k")',
    );
    expect(err(['--manifests', 'd'], { MAILROUTE_MAX_RECIPIENTS_IN_FLIGHT: '-1' })).toBe(
      'MAILROUTE_MAX_RECIPIENTS_IN_FLIGHT: must be an integer >= 1 (got "-1")',
    );
    // fewer than --max-recipients could never take one full message
    expect(err(['--manifests', 'd', '--max-recipients-in-flight', '999'])).toBe(
      '--max-recipients-in-flight: must be at least --max-recipients (1000) (got "999")',
    );
    expect(relayUsage()).toMatch(/--max-recipients-in-flight {2,}recipients held in all open transactions/);
  });

  it('--max-errors / MAILROUTE_MAX_ERRORS: default 20 (Postfix smtpd_hard_error_limit), 0 turns it off, a bad value names the flag', () => {
    expect(ok(['--manifests', 'd']).maxErrors).toBe(20);
    expect(ok(['--manifests', 'd', '--max-errors', '0']).maxErrors).toBe(0);
    expect(ok(['--manifests', 'd'], { MAILROUTE_MAX_ERRORS: '5' }).maxErrors).toBe(5);
    expect(ok(['--manifests', 'd', '--max-errors', '7'], { MAILROUTE_MAX_ERRORS: '5' }).maxErrors).toBe(7);
    expect(err(['--manifests', 'd', '--max-errors', 'many'])).toBe(
      '--max-errors: must be an integer >= 0 (got "many")',
    );
    expect(err(['--manifests', 'd'], { MAILROUTE_MAX_ERRORS: '-1' })).toBe(
      'MAILROUTE_MAX_ERRORS: must be an integer >= 0 (got "-1")',
    );
    expect(relayUsage()).toMatch(/--max-errors {2,}other refusals in one session/);
  });

  it('--delay-warning / MAILROUTE_DELAY_WARNING: default 4h, 0 turns delay DSNs off, a bad value names the flag', () => {
    expect(ok(['--manifests', 'd']).delayWarningMs).toBe(4 * 3_600_000);
    expect(ok(['--manifests', 'd'], { MAILROUTE_DELAY_WARNING: '0' }).delayWarningMs).toBe(0);
    expect(ok(['--manifests', 'd', '--delay-warning', '30m']).delayWarningMs).toBe(1_800_000);
    expect(err(['--manifests', 'd', '--delay-warning', 'soon'])).toMatch(/^--delay-warning: /);
  });

  it('--shed-copies-below / MAILROUTE_SHED_COPIES_BELOW: default 10%, a size or 0; a bad value names the flag', () => {
    expect(ok(['--manifests', 'd']).shedCopiesBelow).toEqual({ percent: 10 });
    expect(ok(['--manifests', 'd'], { MAILROUTE_SHED_COPIES_BELOW: '0' }).shedCopiesBelow).toEqual({
      bytes: 0,
    });
    expect(ok(['--manifests', 'd', '--shed-copies-below', '2GiB']).shedCopiesBelow).toEqual({
      bytes: 2 * 1024 ** 3,
    });
    expect(err(['--manifests', 'd', '--shed-copies-below', '95%'])).toMatch(
      /^--shed-copies-below: must be a share of the volume like 10% \(at most 90%\), a size like 2GiB, or 0/,
    );
  });

  it('--dns-servers / MAILROUTE_DNS_SERVERS: a list of servers; a bad one names the flag', () => {
    expect(ok(['--manifests', 'd']).dnsServers).toBeUndefined();
    expect(ok(['--manifests', 'd'], { MAILROUTE_DNS_SERVERS: '127.0.0.1:5353,::1' }).dnsServers).toEqual([
      '127.0.0.1:5353',
      '::1',
    ]);
    expect(err(['--manifests', 'd', '--dns-servers', 'dns.example.com'])).toMatch(/^--dns-servers: /);
  });

  it('--dsn-relay / MAILROUTE_DSN_RELAY: optional smarthost for DSNs', () => {
    expect(ok(['--manifests', 'a']).dsnRelay).toBeUndefined();
    expect(ok(['--manifests', 'a', '--dsn-relay', 'smtp.example:587']).dsnRelay).toEqual({
      host: 'smtp.example',
      port: 587,
    });
    expect(ok(['--manifests', 'a'], { MAILROUTE_DSN_RELAY: '127.0.0.1:2600' }).dsnRelay).toEqual({
      host: '127.0.0.1',
      port: 2600,
    });
  });
  for (const [argv, re] of bad) {
    it(`fails fast naming the flag: ${argv.join(' ') || '(nothing)'}`, () => {
      expect(err(argv)).toMatch(re);
    });
  }

  it('names the environment variable for a bad value that came from it; a flag wins and is named', () => {
    expect(err(['--manifests', 'a'], { MAILROUTE_IDLE_TIMEOUT: 'soon' })).toMatch(
      /^MAILROUTE_IDLE_TIMEOUT: must be a duration/,
    );
    expect(err(['--manifests', 'a'], { MAILROUTE_LISTEN: 'nope' })).toBe(
      'MAILROUTE_LISTEN: must be HOST:PORT with a port from 0 to 65535 (0: any free port) (got "nope")',
    );
    expect(err(['--manifests', 'a', '--listen', 'nope'], { MAILROUTE_LISTEN: '127.0.0.1:25' })).toMatch(
      /^--listen: must be HOST:PORT/,
    );
    // a rule between flags shows no value: the flag is named whatever set it
    expect(err([], { MAILROUTE_MANIFESTS: 'a', MAILROUTE_ROUTING_FILE: 'b' })).toMatch(
      /^--manifests: only one routing source/,
    );
  });

  it('a port out of range is named as such', () => {
    expect(err(['--manifests', 'a', '--listen', '127.0.0.1:70000'])).toBe(
      '--listen: must be HOST:PORT with a port from 0 to 65535 (0: any free port) (got "127.0.0.1:70000")',
    );
    expect(ok(['--manifests', 'a', '--listen', '127.0.0.1:0']).listen).toEqual({
      host: '127.0.0.1',
      port: 0,
    });
    // a server to connect to has no port 0
    expect(err(['--manifests', 'a', '--dsn-relay', 'smarthost:0'])).toBe(
      '--dsn-relay: must be HOST:PORT with a port from 1 to 65535 (got "smarthost:0")',
    );
  });

  it('--help: every flag name is followed by two spaces, also the longest (--max-unknown-recipients-per-ip)', () => {
    const rows = relayUsage()
      .split('\n')
      .filter((l) => l.startsWith('  --'));
    expect(rows.length).toBeGreaterThan(30);
    for (const row of rows) expect(row, row).toMatch(/^ {2}--[a-z0-9-]+ {2,}\S/);
    expect(relayUsage()).toMatch(
      /--max-unknown-recipients-per-ip {2,}unknown or refused recipients from one client/,
    );
  });

  it('parses host:port', () => {
    expect(parseHostPort('[::1]:25')).toEqual({ host: '::1', port: 25 });
    expect(parseHostPort(':25')).toEqual({ host: '0.0.0.0', port: 25 });
  });

  it('usage lists every flag with its environment variable note', () => {
    const u = relayUsage();
    for (const f of [
      '--manifests',
      '--max-recipients',
      '--max-connections-per-ip',
      '--idle-timeout',
      '--data-timeout',
      '--bare-lf',
      '--shutdown-timeout',
    ]) {
      expect(u).toContain(f);
    }
  });

  it.each([
    { argv: [], cpus: 2, workers: 1 },
    { argv: ['--workers', 'auto'], cpus: 2, workers: 2 },
    { argv: ['--workers', 'auto'], cpus: 1, workers: 1 },
    { argv: ['--workers', 'auto'], cpus: 200, workers: 64 },
    { argv: ['--workers', 'auto', '--configmap', 'ns/name'], cpus: 8, workers: 1 },
    { argv: ['--workers', '3'], cpus: 2, workers: 3 },
    { argv: ['--workers', '1'], cpus: 8, workers: 1 },
    { argv: ['--configmap', 'ns/name'], cpus: 8, workers: 1 },
    { argv: ['--peers', 'a:2525'], cpus: 8, workers: 1 },
  ])('--workers $argv with $cpus CPUs -> $workers', ({ argv, cpus, workers }) => {
    const base = argv.includes('--configmap') ? [] : ['--manifests', 'dir'];
    const r = parseRelayConfig([...base, ...argv], {}, () => cpus);
    expect(r.ok === true && r.config.workers).toBe(workers);
  });

  it('--workers: refused values name the flag', () => {
    expect(err(['--manifests', 'd', '--workers', '0'])).toMatch(/^--workers: must be an integer >= 1/);
    expect(err(['--manifests', 'd', '--workers', '65'])).toMatch(
      /^--workers: must be auto or an integer 1\.\.64/,
    );
    expect(err(['--configmap', 'ns/n', '--workers', '2'])).toMatch(
      /^--workers: more than 1 worker is not supported in cluster mode/,
    );
    expect(ok(['--manifests', 'd'], { MAILROUTE_WORKERS: '1' }).workers).toBe(1);
  });
});
