// Runs the real `mailroute` bin (node_modules/.bin/node bin/mailroute.js) for check, render and route: on the
// examples, and on bad input (one clear line naming the field, exit code 1, never a stack trace).
import { execFile } from 'node:child_process';
import { sha256Hex } from '../../routing/canonical.ts';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const nodeBin = join(root, 'node_modules', '.bin', 'node');
const mailroute = join(root, 'bin', 'mailroute.js');
const examples = join(root, 'examples');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(nodeBin, [mailroute, ...args], { cwd: root, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

function noStackTrace(r: Run): void {
  expect(`${r.stdout}${r.stderr}`).not.toMatch(/\n\s+at .+:\d+:\d+/);
}

interface PlanJson {
  recipient: string;
  verdict: string;
  reply: string;
  legs: { server: string; host: string; port: number; recipient: string; role: string; bounces: string }[];
}

async function route(dir: string, to: string, ...extra: string[]): Promise<PlanJson> {
  const r = await run(
    'route',
    '-f',
    join(examples, dir),
    '--to',
    to,
    '--at',
    '2026-06-01T00:00:00Z',
    '-o',
    'json',
    ...extra,
  );
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as PlanJson;
}

const legs = (p: PlanJson) => p.legs.map((l) => `${l.role}:${l.server}:${l.recipient}:${l.bounces}`);

const EXAMPLES = [
  'demo',
  'dual-test-users-exchange',
  'dual-domain-alias-google',
  'dual-new-primary-copy-old',
  'scheduled-cutover',
  'split-new-primary',
];

describe('mailroute check / render on the examples', () => {
  it.each(EXAMPLES)('%s checks, and renders byte-identically with the revision check prints', async (dir) => {
    const check = await run('check', '-f', join(examples, dir));
    expect(check.stdout).toMatch(/^ok: \d+ objects/m);
    expect(check.code).toBe(0);
    const [a, b] = await Promise.all([
      run('render', '-f', join(examples, dir), '--compact'),
      run('render', '-f', join(examples, dir), '--compact'),
    ]);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const revision = sha256Hex(a.stdout.trimEnd());
    expect(check.stdout).toContain(`revision ${revision.slice(0, 12)}`);
    const table = JSON.parse(a.stdout) as { kind: string; domains: Record<string, unknown> };
    expect(table.kind).toBe('RoutingTable');
    expect(Object.keys(table.domains)).toEqual(['example.com']);
  });

  it('check -f /dev/stdin reads the manifests a shell pipe brings (a named pipe in a folder is refused instead)', async () => {
    const file = join(examples, 'demo', 'mailroute.yaml');
    const r = await new Promise<Run>((resolve) => {
      execFile(
        'sh',
        ['-c', 'cat "$1" | "$2" "$3" check -f /dev/stdin', 'sh', file, nodeBin, mailroute],
        { cwd: root, timeout: 30_000 },
        (err, stdout, stderr) =>
          resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
      );
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok: 2 objects \(1 MailDomain, 1 DeliveryPolicy\)/m);
  });

  it('checks all examples at once (directories are read recursively)', async () => {
    // Every example declares example.com: together they conflict, and check says so.
    const r = await run('check', '-f', examples);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      // the winner is in another namespace (default vs mail): the loser is not told which object it is
      /MailDomain\/mail\/example-com: spec\.domain: domain example\.com is claimed by another object you cannot see \(DomainConflict\)/,
    );
    noStackTrace(r);
  });
});

describe('mailroute route on the examples follows the semantics table', () => {
  it('demo: Dual scope All, primary + copy', async () => {
    const p = await route('demo', 'alice@example.com');
    expect(p.verdict).toBe('accept');
    expect(p.reply).toBe('250 2.1.5 recipient ok');
    expect(p.legs).toEqual([
      {
        server: 'old',
        host: '127.0.0.1',
        port: 2601,
        recipient: 'alice@example.com',
        role: 'primary',
        bounces: 'Notify',
        record: true,
      },
      {
        server: 'new',
        host: '127.0.0.1',
        port: 2602,
        recipient: 'alice@example.com',
        role: 'copy',
        bounces: 'Suppress',
        record: false,
      },
    ]);
  });

  it('a domain no MailDomain declares is refused with 554 5.7.1 and no legs', async () => {
    const p = await route('demo', 'alice@example.org');
    expect(p).toEqual({
      recipient: 'alice@example.org',
      verdict: 'reject',
      reply: '554 5.7.1 relay access denied',
      legs: [],
    });
  });

  it('the percent hack stays at example.com', async () => {
    const p = await route('demo', 'user%evil.example@example.com');
    expect(p.verdict).toBe('accept');
    for (const l of p.legs) expect(l.recipient).toBe('user%evil.example@example.com');
  });

  it('Exchange style: a test recipient gets a copy at forwardTo, others only the primary', async () => {
    expect(legs(await route('dual-test-users-exchange', 'alice@example.com'))).toEqual([
      'primary:exchange:alice@example.com:Notify',
      'copy:zoho:alice@example.zohomail.example:Suppress',
    ]);
    expect(legs(await route('dual-test-users-exchange', 'carol@example.com'))).toEqual([
      'primary:exchange:carol@example.com:Notify',
    ]);
  });

  it('Exchange style: the text output says which TestRecipient gave a copy, by the mailbox for a subaddress, and why none did', async () => {
    const text = async (to: string) =>
      (await run('route', '-f', join(examples, 'dual-test-users-exchange'), '--to', to)).stdout;
    const policy =
      "  policy:  mail/example-com-pilot (Dual, scope TestRecipients, copies' bounces Suppress)\n";
    const news = await text('alice+news@example.com');
    expect(news).toContain(
      'copy     zoho (MX of mx.zoho.example, port 25) -> alice+news@example.zohomail.example',
    );
    expect(news).toContain(
      `${policy}  test recipient: mail/alice for alice@example.com, the mailbox of alice+news@example.com\n`,
    );
    expect(await text('carol@example.com')).toContain(
      `${policy}  test recipient: none for this address or its mailbox, so no copy (scope TestRecipients copies test recipients only)\n`,
    );
  });

  it('Exchange style: after expiresAt the test recipient routes like everyone else', async () => {
    const r = await run(
      'route',
      '-f',
      join(examples, 'dual-test-users-exchange'),
      '--to',
      'bob@example.com',
      '--at',
      '2027-01-01T00:00:00Z',
      '-o',
      'json',
    );
    const p = JSON.parse(r.stdout) as PlanJson & { why?: { testRecipient?: unknown } };
    expect(legs(p)).toEqual(['primary:exchange:bob@example.com:Notify']);
    expect(p.why?.testRecipient).toEqual({
      source: 'mail/bob',
      address: 'bob@example.com',
      byMailbox: false,
      active: false,
    });
  });

  it.each([
    [
      '2026-12-05T01:59:59Z',
      ['primary:legacy:alice@example.com:Notify', 'copy:zoho:alice@example.com:Suppress'],
      'dual',
    ],
    [
      '2026-12-05T02:00:00Z',
      ['primary:zoho:alice@example.com:Notify', 'copy:legacy:alice@example.com:Suppress'],
      'reverse-copy',
    ],
    ['2026-12-19T03:00:00+01:00', ['primary:zoho:alice@example.com:Notify'], 'final'],
  ])('scheduled cut-over: route --at %s follows the stage in force', async (at, want, stage) => {
    const r = await run(
      'route',
      '-f',
      join(examples, 'scheduled-cutover'),
      '--to',
      'alice@example.com',
      '--at',
      at,
      '-o',
      'json',
    );
    expect(r.code, r.stderr).toBe(0);
    const p = JSON.parse(r.stdout) as PlanJson & { stage?: { name: string } };
    expect(legs(p)).toEqual(want);
    expect(p.stage?.name).toBe(stage);
  });

  it('scheduled cut-over: check names the stage in force and the next transition', async () => {
    const r = await run('check', '-f', join(examples, 'scheduled-cutover'), '--at', '2026-12-10T00:00:00Z');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      'stage: DeliveryPolicy/mail/example-com-cutover: example.com is in stage reverse-copy at 2026-12-10T00:00:00.000Z; next transition 2026-12-19T02:00:00Z',
    );
  });

  it('Google style: every recipient is copied to the alias domain', async () => {
    expect(legs(await route('dual-domain-alias-google', 'Carol@Example.com'))).toEqual([
      'primary:google:Carol@example.com:Notify',
      'copy:zoho:Carol@example.com.zoho-test.example:Suppress',
    ]);
  });

  it('new primary: Zoho first, a suppressed copy to the old server', async () => {
    const p = await route('dual-new-primary-copy-old', 'dave@example.com');
    expect(legs(p)).toEqual([
      'primary:zoho:dave@example.com:Notify',
      'copy:legacy:dave@example.com:Suppress',
    ]);
    expect(p.legs[1]?.port).toBe(587);
  });

  it('split: known on the primary -> primary; unknown -> secondary', async () => {
    expect(legs(await route('split-new-primary', 'bob@example.com'))).toEqual([
      'primary:zoho:bob@example.com:Notify',
    ]);
    expect(legs(await route('split-new-primary', 'carol@example.com'))).toEqual([
      'primary:legacy:carol@example.com:Notify',
    ]);
  });

  it('text output explains the legs', async () => {
    const r = await run('route', '-f', join(examples, 'demo'), '--to', 'alice@example.com');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('alice@example.com: accept (250 2.1.5 recipient ok)');
    expect(r.stdout).toContain(
      'primary  old (127.0.0.1:2601) -> alice@example.com (bounces: Notify; mailbox of record)',
    );
    expect(r.stdout).toContain('copy     new (127.0.0.1:2602) -> alice@example.com (bounces: Suppress)\n');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Bad input

const dir = mkdtempSync(join(tmpdir(), 'mailroute-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const DOMAIN = `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata:
  name: example-com
spec:
  domain: example.com
  servers:
    - name: old
      host: mail.old.example
    - name: new
      host: mail.new.example
`;
const policy = (name: string, extra = '') => `apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata:
  name: ${name}
spec:
  domainRef:
    name: example-com
  mode: Dual
  primary: old
  secondary: new
${extra}`;

const bad: { name: string; yaml: string; expect: RegExp }[] = [
  {
    name: 'malformed YAML',
    yaml: 'apiVersion: [mailroute\nkind: x\n',
    expect: /bad\.yaml: line \d+: invalid YAML/,
  },
  {
    name: 'unknown kind',
    yaml: 'apiVersion: mailroute.io/v1alpha1\nkind: MailBox\nmetadata: {name: x}\nspec: {}\n',
    expect: /bad\.yaml: MailBox\/x: unknown kind "MailBox"/,
  },
  {
    name: 'unknown field',
    yaml: DOMAIN + '  colour: red\n',
    expect: /bad\.yaml: MailDomain\/example-com: spec\.colour: unknown field/,
  },
  {
    name: 'wrong type',
    yaml: DOMAIN.replace('host: mail.old.example', 'host: mail.old.example\n      port: "twenty-five"'),
    expect:
      /bad\.yaml: MailDomain\/example-com: spec\.servers\[0\]\.port: must be integer, got "twenty-five"/,
  },
  {
    name: 'out of range',
    yaml: DOMAIN.replace('host: mail.old.example', 'host: mail.old.example\n      port: 70000'),
    expect: /bad\.yaml: MailDomain\/example-com: spec\.servers\[0\]\.port: must be <= 65535, got 70000/,
  },
  {
    name: 'CEL rule (secondary == primary)',
    yaml: `${DOMAIN}---\n${policy('p').replace('secondary: new', 'secondary: old')}`,
    expect: /bad\.yaml: DeliveryPolicy\/p: spec\.secondary: secondary must differ from primary/,
  },
  {
    name: 'dangling ref',
    yaml: `${DOMAIN}---\n${policy('p').replace('name: example-com\n  mode', 'name: example-org\n  mode')}`,
    expect:
      /bad\.yaml: DeliveryPolicy\/p: spec\.domainRef\.name: MailDomain default\/example-org not found \(DomainNotFound\)/,
  },
  {
    name: 'unknown server',
    yaml: `${DOMAIN}---\n${policy('p').replace('primary: old', 'primary: zoho')}`,
    expect: /bad\.yaml: DeliveryPolicy\/p: spec\.primary: server zoho is not one of .* \(UnknownServer\)/,
  },
  {
    name: 'conflict',
    yaml: `${DOMAIN}---\n${policy('a')}---\n${policy('b')}`,
    expect:
      /bad\.yaml: DeliveryPolicy\/b: spec\.domainRef\.name: MailDomain default\/example-com already has DeliveryPolicy default\/a \(Conflict\)/,
  },
];

describe('bad input: exit 1, one line naming the field, no stack trace', () => {
  it.each(bad)('$name', async ({ name, yaml, expect: want }) => {
    const sub = join(dir, name.replace(/\W+/g, '-'));
    rmSync(sub, { recursive: true, force: true });
    const file = join(sub, 'bad.yaml');
    await import('node:fs/promises').then((fs) => fs.mkdir(sub, { recursive: true }));
    writeFileSync(file, yaml);
    const r = await run('check', '-f', file);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(want);
    expect(r.stdout.split('\n').filter((l) => l.startsWith(file)).length).toBe(1);
    noStackTrace(r);
  });

  it('render refuses load errors (exit 1) but serves a table without the objects that have issues', async () => {
    const sub = join(dir, 'render');
    await import('node:fs/promises').then((fs) => fs.mkdir(sub, { recursive: true }));
    writeFileSync(join(sub, 'conflict.yaml'), `${DOMAIN}---\n${policy('a')}---\n${policy('b')}`);
    const ok = await run('render', '-f', join(sub, 'conflict.yaml'));
    expect(ok.code).toBe(0);
    expect(ok.stderr).toContain('(Conflict)');
    const table = JSON.parse(ok.stdout) as { domains: Record<string, { policy?: { name: string } }> };
    expect(table.domains['example.com']?.policy?.name).toBe('a');
    writeFileSync(join(sub, 'broken.yaml'), 'kind: [\n');
    const broken = await run('render', '-f', join(sub, 'broken.yaml'));
    expect(broken.code).toBe(1);
    expect(broken.stdout).toBe('');
    expect(broken.stderr).toContain('invalid YAML');
  });

  it('a missing path is one line, exit 1', async () => {
    const r = await run('check', '-f', join(dir, 'nope.yaml'));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('nope.yaml: cannot read: ENOENT');
    noStackTrace(r);
  });

  it('usage errors exit 2', async () => {
    const r = await run('check');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('-f PATH is required');
    const r2 = await run('route', '-f', join(examples, 'demo'), '--to', 'a@example.com', '--at', 'yesterday');
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('--at');
    const r3 = await run('render', '--bogus');
    expect(r3.code).toBe(2);
    noStackTrace(r3);
  });
});

describe('mailroute route --verified says which address the relay asks', () => {
  const vdir = mkdtempSync(join(tmpdir(), 'mailroute-cli-verify-'));
  afterAll(() => rmSync(vdir, { recursive: true, force: true }));
  const file = join(vdir, 'acc.yaml');
  writeFileSync(
    file,
    `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: example-com}
spec:
  domain: example.com
  servers:
    - {name: old, host: 10.0.0.1}
    - {name: zoho, host: 10.0.0.2}
  recipientVerification: {server: zoho, cacheTTL: 1h}
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: example-com}
spec:
  domainRef: {name: example-com}
  mode: Dual
  primary: old
  secondary: zoho
  dual: {scope: Accounts, copyRecipientDomain: example.com.zoho-test.example}
`,
  );
  const routeJson = async (...extra: string[]) => {
    const r = await run('route', '-f', file, '--to', 'bob@example.com', '-o', 'json', ...extra);
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as PlanJson & { verification?: unknown };
  };

  it('scope Accounts asks the secondary about the copy address; the answer comes from --verified', async () => {
    const yes = await routeJson('--verified', 'exists');
    expect(yes.verification).toEqual({
      server: 'zoho',
      address: 'bob@example.com.zoho-test.example',
      answer: 'exists',
    });
    expect(legs(yes)).toEqual([
      'primary:old:bob@example.com:Notify',
      'copy:zoho:bob@example.com.zoho-test.example:Suppress',
    ]);
    const none = await routeJson();
    expect(none.verification).toEqual({
      server: 'zoho',
      address: 'bob@example.com.zoho-test.example',
      answer: null,
    });
    expect(legs(none)).toEqual(['primary:old:bob@example.com:Notify']);
  });

  it('text output names the server and the address asked', async () => {
    const r = await run('route', '-f', file, '--to', 'bob@example.com', '--verified', 'absent');
    expect(r.stdout).toContain(
      'verification: the relay asks zoho about bob@example.com.zoho-test.example (RCPT TO callout); answer: absent',
    );
  });
});

describe('DomainClaims among the manifests (standalone: check, route)', () => {
  const gdir = mkdtempSync(join(tmpdir(), 'mailroute-cli-grants-'));
  const open = join(gdir, 'open');
  const granted = join(gdir, 'granted');
  afterAll(() => rmSync(gdir, { recursive: true, force: true }));
  const md = (ns: string, domain: string) => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: corp, namespace: ${ns}}
spec: {domain: ${domain}, rejectUnknownRecipients: true, servers: [{name: mx, host: mx.${ns}.test}]}
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: corp, namespace: ${ns}}
spec: {domainRef: {name: corp}, mode: Direct, primary: mx}
`;
  for (const d of [open, granted]) mkdirSync(d);
  for (const d of [open, granted]) writeFileSync(join(d, 'team-a.yaml'), md('team-a', 'corp.test'));
  // team-b is older (a same-named object is re-created in team-a later): without grants it would take corp.test
  for (const d of [open, granted])
    writeFileSync(
      join(d, 'team-b.yaml'),
      md('team-b', 'corp.test').replace(
        'namespace: team-b}',
        'namespace: team-b, creationTimestamp: "2026-01-01T00:00:00Z"}',
      ),
    );

  writeFileSync(
    join(granted, 'grants.yaml'),
    `apiVersion: mailroute.io/v1alpha1
kind: DomainClaim
metadata: {name: team-a}
spec: {domains: [corp.test], namespaces: {names: [team-a]}}
`,
  );

  it('none: open (the older team-b object wins)', async () => {
    const r = await run('route', '-f', open, '--to', 'x@corp.test', '-o', 'json');
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as PlanJson).legs[0]?.host).toBe('mx.team-b.test');
  });

  it('with a DomainClaim: team-b is NotPermitted and team-a routes corp.test', async () => {
    const check = await run('check', '-f', granted);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain(
      'team-b.yaml: MailDomain/team-b/corp: spec.domain: no DomainClaim grants domain corp.test to namespace team-b; ask the cluster admin (NotPermitted)',
    );
    noStackTrace(check);
    const r = await run('route', '-f', granted, '--to', 'x@corp.test', '-o', 'json');
    expect((JSON.parse(r.stdout) as PlanJson).legs[0]?.host).toBe('mx.team-a.test');
  });
});

describe('route at an IDN domain written in Unicode', () => {
  it('--to bob@münchen.test finds the A-label domain: its stage in force and its softBounce', async () => {
    const sub = join(dir, 'idn-soft');
    mkdirSync(sub, { recursive: true });
    writeFileSync(
      join(sub, 'mail.yaml'),
      `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: muenchen}
spec:
  domain: xn--mnchen-3ya.test
  servers:
    - {name: old, host: mail.old.example}
    - {name: new, host: mail.new.example}
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: muenchen}
spec:
  domainRef: {name: muenchen}
  mode: Direct
  primary: new
  stages:
    - {name: cutover, until: '2026-12-12T00:00:00Z', mode: Direct, primary: new, softBounce: true}
`,
    );
    const r = await run(
      'route',
      '-f',
      sub,
      '--to',
      'bob@münchen.test',
      '--at',
      '2026-12-07T00:00:00Z',
      '-o',
      'json',
    );
    expect(r.code, r.stderr).toBe(0);
    const p = JSON.parse(r.stdout) as PlanJson & { stage?: { name: string }; softBounce?: boolean };
    expect(p.verdict).toBe('accept');
    expect(p.stage?.name).toBe('cutover');
    expect(p.softBounce).toBe(true);
  });
});
