// The CRDs (crds/*.yaml) on a real API server refuse bad objects with messages that name the field.

import { beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';

const NS = 'validation';
const md = (name: string, domain: string, servers: string): string => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: ${name}}
spec:
  domain: ${domain}
  servers: ${servers}
`;
const dp = (spec: string): string => `apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: p}
spec: ${spec}
`;
const tr = (address: string, expiresAt?: string): string => `apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: t}
spec: {policyRef: {name: p}, address: "${address}"${expiresAt === undefined ? '' : `, expiresAt: "${expiresAt}"`}}
`;
const dc = (destinations: string): string => `apiVersion: mailroute.io/v1alpha1
kind: DomainClaim
metadata: {name: grant}
spec: {domains: [grant.example], namespaces: {names: [${NS}]}, destinations: ${destinations}}
`;
/** A policy whose one stage ends at `until`. */
const staged = (until: string): string =>
  dp(
    `{domainRef: {name: ok}, mode: Direct, primary: b, stages: [{name: s1, until: "${until}", mode: Direct, primary: a}]}`,
  );

describeCluster('CRD schemas and CEL rules', (ctx) => {
  const apply = (yaml: string): Promise<{ code: number; stdout: string; stderr: string }> =>
    ctx.cp.kubectl(['apply', '--server-side', '-n', NS, '-f', '-'], { stdin: yaml });
  /** One object's fields as the API server keeps them (`kubectl get -o jsonpath=...`). */
  const field = async (kind: string, name: string, jsonpath: string): Promise<string> =>
    (await ctx.cp.kubectl(['get', kind, name, '-n', NS, '-o', `jsonpath=${jsonpath}`])).stdout;

  beforeAll(async () => {
    await createNamespace(ctx.cp, NS);
  });

  it('accepts a valid MailDomain and DeliveryPolicy, and prints the columns', async () => {
    expect(
      (
        await apply(
          md('ok', 'ok.example', '[{name: a, host: mail.ok.example}, {name: b, host: 10.0.0.5, port: 2525}]'),
        )
      ).code,
    ).toBe(0);
    const r = await apply(dp('{domainRef: {name: ok}, mode: Dual, primary: a, secondary: b}'));
    expect(r.code, r.stderr).toBe(0);
    const get = await ctx.cp.kubectl(['get', 'md', 'ok', '-n', NS]);
    expect(get.stdout).toMatch(/NAME\s+DOMAIN\s+REACHABLE\s+READY\s+AGE/);
    expect(get.stdout).toContain('ok.example');
  });

  const bad: [string, string, RegExp][] = [
    [
      'Dual without secondary',
      dp('{domainRef: {name: ok}, mode: Dual, primary: a}'),
      /spec\.secondary: Required value: secondary is required when mode is Dual or Split/,
    ],
    [
      'Split without secondary',
      dp('{domainRef: {name: ok}, mode: Split, primary: a}'),
      /spec\.secondary: Required value/,
    ],
    [
      'secondary equal to primary',
      dp('{domainRef: {name: ok}, mode: Dual, primary: a, secondary: a}'),
      /spec\.secondary: Invalid value.*secondary must differ from primary/,
    ],
    [
      'unknown mode',
      dp('{domainRef: {name: ok}, mode: Triple, primary: a, secondary: b}'),
      /spec\.mode: Unsupported value: "Triple"/,
    ],
    [
      'duplicate server names',
      md('dup', 'dup.example', '[{name: a, host: h1.example}, {name: a, host: h2.example}]'),
      /spec\.servers: (Duplicate value.*server names must be unique|duplicate entries for key \[name="a"\])/,
    ],
    [
      'server name not a DNS label',
      md('lbl', 'lbl.example', '[{name: Bad_Name, host: h1.example}]'),
      /spec\.servers\[0\]\.name: Invalid value/,
    ],
    [
      'upper-case domain',
      md('uc', 'Example.COM', '[{name: a, host: h1.example}]'),
      /spec\.domain: Invalid value/,
    ],
    [
      'no servers',
      md('none', 'none.example', '[]'),
      /spec\.servers: Invalid value.*should have at least 1 items/,
    ],
    ['bad address pattern', tr('not-an-address'), /spec\.address: Invalid value: "not-an-address"/],
    [
      'an address whose domain is in U-labels',
      tr('jos\u00e9@m\u00fcnchen.example'),
      /spec\.address: Invalid value: "jos\u00e9@m\u00fcnchen\.example"/,
    ],
    [
      'a recipientDelimiter that would split at a dot or the @',
      `${md('delim', 'delim.example', '[{name: a, host: h1.example}]')}  recipientDelimiter: ".@"\n`,
      /spec\.recipientDelimiter: Invalid value: "\.@"/,
    ],
    [
      'a softBounce that is not a boolean',
      dp('{domainRef: {name: ok}, mode: Direct, primary: b, softBounce: "yes"}'),
      // server-side apply refuses the type before validation, naming the field
      /\.spec\.softBounce: expected boolean, got/,
    ],
    [
      'stages out of order',
      dp(
        '{domainRef: {name: ok}, mode: Direct, primary: b, stages: [{name: s1, until: "2026-12-19T02:00:00Z", mode: Dual, primary: a, secondary: b}, {name: s2, until: "2026-12-05T02:00:00Z", mode: Direct, primary: b}]}',
      ),
      /spec\.stages: Invalid value.*stages must be listed in order of until/,
    ],
    [
      'two stages ending at the same instant, written with different offsets',
      dp(
        '{domainRef: {name: ok}, mode: Direct, primary: b, stages: [{name: s1, until: "2026-12-05T02:00:00Z", mode: Dual, primary: a, secondary: b}, {name: s2, until: "2026-12-05T03:00:00+01:00", mode: Direct, primary: b}]}',
      ),
      /spec\.stages: Invalid value.*cannot overlap/,
    ],
    [
      'a stage that changes the domain',
      dp(
        '{domainRef: {name: ok}, mode: Direct, primary: b, stages: [{name: s1, until: "2026-12-05T02:00:00Z", mode: Direct, primary: a, domainRef: {name: other}}]}',
      ),
      // server-side apply names the list-map entry by its key
      /\.spec\.stages\[name="s1"\]\.domainRef: field not declared in schema/,
    ],
    [
      'a stage in Dual without a secondary',
      dp(
        '{domainRef: {name: ok}, mode: Direct, primary: b, stages: [{name: s1, until: "2026-12-05T02:00:00Z", mode: Dual, primary: a}]}',
      ),
      /spec\.stages\[0\]\.secondary: Required value/,
    ],
    [
      'a stage until that is not a date-time',
      dp(
        '{domainRef: {name: ok}, mode: Direct, primary: b, stages: [{name: s1, until: "Saturday", mode: Direct, primary: a}]}',
      ),
      /spec\.stages\[0\]\.until: Invalid value: "Saturday"/,
    ],
    // The API server's own `format: date-time` accepts these (its pattern has an unescaped dot and no range for the
    // offset); Date.parse cannot read them, and an unreadable expiry used to mean "never". The CRD's pattern refuses them.
    [
      'an expiresAt with a comma before the fraction',
      tr('a@ok.example', '2026-06-05T00:00:00,5Z'),
      /spec\.expiresAt: Invalid value: "2026-06-05T00:00:00,5Z"/,
    ],
    [
      'an expiresAt with an offset of +99:99',
      tr('a@ok.example', '2026-06-05T00:00:00+99:99'),
      /spec\.expiresAt: Invalid value: "2026-06-05T00:00:00\+99:99"/,
    ],
    [
      // refused by the API server's own format check already; the pattern agrees
      'an expiresAt on February 30',
      tr('a@ok.example', '2026-02-30T00:00:00Z'),
      /spec\.expiresAt: Invalid value: "2026-02-30T00:00:00Z"/,
    ],
    [
      'a stage until with a comma before the fraction',
      staged('2026-12-05T02:00:00,5Z'),
      /spec\.stages\[0\]\.until: Invalid value: "2026-12-05T02:00:00,5Z"/,
    ],
    [
      'a stage until with an offset of +99:99',
      staged('2026-12-05T02:00:00+99:99'),
      /spec\.stages\[0\]\.until: Invalid value: "2026-12-05T02:00:00\+99:99"/,
    ],
    // The shape of a CIDR used to be enough: a prefix of 33 turned the deny list into "every address" in the table.
    [
      'a DomainClaim deny entry with an IPv4 prefix of 33',
      dc('{deny: ["10.0.0.0/33"]}'),
      /spec\.destinations\.deny\[0\]: Invalid value: "10\.0\.0\.0\/33"/,
    ],
    [
      'a DomainClaim allow entry with an octet over 255',
      dc('{allow: ["10.0.0.0/8", "999.1.1.1"]}'),
      /spec\.destinations\.allow\[1\]: Invalid value: "999\.1\.1\.1"/,
    ],
    [
      'a DomainClaim deny entry with an IPv6 prefix of 129',
      dc('{deny: ["fd00::/129"]}'),
      /spec\.destinations\.deny\[0\]: Invalid value: "fd00::\/129"/,
    ],
  ];
  it.each(bad)('refuses %s with a field-named message', async (_name, yaml, message) => {
    const r = await apply(yaml);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });

  it('defaults recipientDelimiter to + (subaddressing on)', async () => {
    const r = await apply(md('plus', 'plus.example', '[{name: a, host: h1.example}]'));
    expect(r.code, r.stderr).toBe(0);
    expect(await field('md', 'plus', '{.spec.recipientDelimiter}')).toBe('+');
  });

  it('accepts ordered stages', async () => {
    const r = await apply(
      dp(
        '{domainRef: {name: ok}, mode: Direct, primary: b, stages: [{name: s1, until: "2026-12-05T02:00:00Z", mode: Dual, primary: a, secondary: b}, {name: s2, until: "2026-12-19T03:00:00+01:00", mode: Dual, primary: b, secondary: a}]}',
      ),
    );
    expect(r.code, r.stderr).toBe(0);
  });

  it('accepts softBounce on a policy and on a stage, and keeps it as written', async () => {
    const r = await apply(
      dp(
        '{domainRef: {name: ok}, mode: Direct, primary: b, softBounce: false, stages: [{name: cutover, until: "2026-12-05T02:00:00Z", mode: Direct, primary: b, softBounce: true}]}',
      ),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(await field('dp', 'p', '{.spec.softBounce} {.spec.stages[0].softBounce}')).toBe('false true');
  });

  it('accepts a UTF-8 local part (SMTPUTF8) in accounts and TestRecipient addresses: the pattern holds in RE2', async () => {
    for (const yaml of [
      tr('jos\u00e9@ok.example'),
      tr('jose\u0301.\u7528\u6237@ok.example'),
      `${md('utf8', 'xn--mnchen-3ya.example', '[{name: a, host: h1.example}]')}  accounts: [{server: a, addresses: ["jos\u00e9@xn--mnchen-3ya.example"]}]\n`,
    ]) {
      const r = await apply(yaml);
      expect(r.code, `${yaml}\n${r.stderr}`).toBe(0);
    }
  });

  it('accepts RFC 3339 times with an offset, a fraction or lower-case letters, and CIDRs at the edges of their ranges', async () => {
    for (const yaml of [
      tr('a@ok.example', '2026-12-31T01:00:00.5+01:00'),
      tr('a@ok.example', '2028-02-29t00:00:00z'),
      staged('2026-12-05T02:00:00.123456789-23:59'),
      dc(
        '{allow: ["10.244.1.7", "fd00::/64", "::ffff:10.0.0.0/104"], deny: ["0.0.0.0/0", "255.255.255.255/32", "::/128"]}',
      ),
    ]) {
      const r = await apply(yaml);
      expect(r.code, `${yaml}\n${r.stderr}`).toBe(0);
    }
  });

  it('refuses duplicate server names through the CEL rule on a plain create', async () => {
    const r = await ctx.cp.kubectl(['create', '-n', NS, '-f', '-'], {
      stdin: md('dup2', 'dup2.example', '[{name: a, host: h1.example}, {name: a, host: h2.example}]'),
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/spec\.servers(\[1\])?: Duplicate value/);
  });

  it('refuses a change of spec.domain (immutable)', async () => {
    const r = await apply(
      md('ok', 'other.example', '[{name: a, host: mail.ok.example}, {name: b, host: 10.0.0.5, port: 2525}]'),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/spec\.domain: Invalid value.*domain is immutable/);
  });
});
