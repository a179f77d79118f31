import { describe, expect, it } from 'vitest';
import { parseOperatorConfig } from './config.ts';
import { checkDestination } from '../routing/destinations.ts';
import { DEFAULT_WATCHDOG_MS } from './kube/supervisor.ts';
import { LONGEST_QUIET_WATCH_MS } from '../lib/kube-watch.ts';

describe('parseOperatorConfig', () => {
  it('destination policy: the cluster defaults, plus --deny-destinations, minus --allow-destinations', () => {
    const d = parseOperatorConfig([], {});
    if (d.ok !== true) throw new Error('defaults');
    for (const a of ['127.0.0.1', '::1', '169.254.169.254', 'fd00:ec2::254', '::ffff:127.0.0.1']) {
      expect(checkDestination(d.config.destinations, a).permitted, a).toBe(false);
    }
    expect(checkDestination(d.config.destinations, '192.0.2.25').permitted).toBe(true);
    const x = parseOperatorConfig(
      ['--deny-destinations', '10.244.0.0/16', '--allow-destinations', '127.0.0.1'],
      {},
    );
    if (x.ok !== true) throw new Error('flags');
    expect(checkDestination(x.config.destinations, '10.244.1.1').permitted).toBe(false);
    expect(checkDestination(x.config.destinations, '127.0.0.1').permitted).toBe(true);
    expect(parseOperatorConfig(['--deny-destinations', 'nope'], {})).toEqual({
      ok: false,
      error: '--deny-destinations: "nope" is not an IP address or CIDR (IPv4 a.b.c.d/n or IPv6 x:y::z/n)',
    });
  });

  it('has the documented defaults', () => {
    const r = parseOperatorConfig([], { POD_NAME: 'op-0' });
    if (r.ok !== true) throw new Error(JSON.stringify(r));
    expect(r.config).toMatchObject({
      namespace: 'mailroute-system',
      kubeconfig: undefined,
      leaderElect: true,
      leaseName: 'mailroute-operator',
      identity: 'op-0',
      http: { host: '0.0.0.0', port: 8080 },
      configMapName: 'mailroute-routing',
      inlineMaxBytes: 921_600,
      secretNamespaces: [],
      preflightIntervalMs: 300_000,
      removedDomainGraceMs: 86_400_000,
      routingResyncMs: 60_000,
    });
    const off = parseOperatorConfig(['--preflight-interval', 'off'], {});
    expect(off.ok === true && off.config.preflightIntervalMs).toBe(0);
    const noGrace = parseOperatorConfig(['--removed-domain-grace', '0'], {});
    expect(noGrace.ok === true && noGrace.config.removedDomainGraceMs).toBe(0);
    expect(Object.isFrozen(r.config)).toBe(true);
  });

  it('reads POD_NAMESPACE, KUBECONFIG and MAILROUTE_<FLAG>; flags win', () => {
    const env = {
      POD_NAMESPACE: 'ops',
      KUBECONFIG: '/k',
      MAILROUTE_LEADER_ELECT: 'false',
      MAILROUTE_HTTP: '127.0.0.1:9000',
      MAILROUTE_SECRET_NAMESPACES: 'a, b',
    };
    const r = parseOperatorConfig(['--http', '[::1]:8081'], env);
    if (r.ok !== true) throw new Error(JSON.stringify(r));
    expect(r.config).toMatchObject({
      namespace: 'ops',
      kubeconfig: '/k',
      leaderElect: false,
      http: { host: '::1', port: 8081 },
      secretNamespaces: ['a', 'b'],
    });
  });

  it.each([
    [['--leader-elect', 'yes'], /--leader-elect: expected true or false/],
    [['--http', 'nope'], /--http: expected HOST:PORT/],
    [['--namespace', 'Bad_NS'], /--namespace: not a namespace name/],
    [['--workers', '0'], /--workers: expected an integer >= 1/],
    [['--relist-interval', '10x'], /--relist-interval: expected a duration/],
    [['--routing-resync', '0'], /--routing-resync: expected a duration/],
    [['--watchdog', '2m'], /--watchdog: must be longer than 630s, the longest a quiet watch lasts, got "2m"/],
    [['--shard-max-bytes', '2000000'], /--shard-max-bytes: at most/],
    [['--inline-max-bytes', '3000000'], /--inline-max-bytes: at most 1047552 \(a ConfigMap holds 1 MiB/],
    [['--inline-max-bytes', '1047553'], /--inline-max-bytes: at most 1047552/],
    [['--secret-namespaces', 'ok,Not_OK'], /--secret-namespaces: not a namespace name: "Not_OK"/],
    [['--preflight-interval', 'never'], /--preflight-interval: expected a duration like 5m, or off/],
    [['--removed-domain-grace=-1h'], /--removed-domain-grace: expected a duration like 24h, or 0, got "-1h"/],
    [['--removed-domain-grace', 'forever'], /--removed-domain-grace: expected a duration like 24h, or 0/],
    [['--bogus'], /Unknown option '--bogus'/],
  ])('refuses %j naming the flag', (argv, re) => {
    const r = parseOperatorConfig(argv, {});
    expect(r.ok).toBe(false);
    if (r.ok === false) expect(r.error).toMatch(re);
  });

  it.each([
    [{ MAILROUTE_LEADER_ELECT: 'yes' }, /^MAILROUTE_LEADER_ELECT: expected true or false/],
    [{ MAILROUTE_WORKERS: '0' }, /^MAILROUTE_WORKERS: expected an integer >= 1/],
    [{ MAILROUTE_RELIST_INTERVAL: '10x' }, /^MAILROUTE_RELIST_INTERVAL: expected a duration/],
    [{ MAILROUTE_SHARD_MAX_BYTES: '2000000' }, /^MAILROUTE_SHARD_MAX_BYTES: at most/],
    [{ MAILROUTE_INLINE_MAX_BYTES: '2000000' }, /^MAILROUTE_INLINE_MAX_BYTES: at most 1047552/],
    [{ MAILROUTE_LOG_FORMAT: 'xml' }, /^MAILROUTE_LOG_FORMAT: must be json or pretty/],
    [{ MAILROUTE_NAMESPACE: 'Bad_NS' }, /^MAILROUTE_NAMESPACE: not a namespace name/],
    [{ POD_NAMESPACE: 'Bad_NS' }, /^POD_NAMESPACE: not a namespace name/],
  ])('refuses a bad environment variable %j naming the variable, not the flag', (env, re) => {
    const r = parseOperatorConfig([], env);
    expect(r.ok).toBe(false);
    if (r.ok === false) expect(r.error).toMatch(re);
  });

  it('takes --inline-max-bytes up to 1047552: an inline table and its revision fit a ConfigMap (1 MiB)', () => {
    const r = parseOperatorConfig(['--inline-max-bytes', '1047552'], {});
    expect(r.ok === true && r.config.inlineMaxBytes).toBe(1_047_552);
  });

  it('takes the durations the relay takes (lib/flags.ts): days and decimals', () => {
    const r = parseOperatorConfig(['--relist-interval', '1d', '--preflight-interval', '1.5m'], {});
    expect(r.ok === true && [r.config.relistIntervalMs, r.config.preflightIntervalMs]).toEqual([
      86_400_000, 90_000,
    ]);
  });
});

describe('--watchdog default', () => {
  it('is the supervisor default and outlasts the longest quiet watch', () => {
    const r = parseOperatorConfig([], {});
    if (r.ok !== true) throw new Error(JSON.stringify(r));
    expect(r.config.watchdogMs).toBe(DEFAULT_WATCHDOG_MS);
    expect(r.config.watchdogMs).toBeGreaterThan(LONGEST_QUIET_WATCH_MS);
  });
});
