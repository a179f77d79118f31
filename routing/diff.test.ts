import { describe, expect, it } from 'vitest';
import { compile } from './compile.ts';
import { diffTables, sampleRecipients, type DomainDiff } from './diff.ts';
import type { MailrouteObject } from './types.ts';
import type { RoutingTable } from './model.ts';
import {
  cutoverStage,
  exampleDomain,
  examplePolicy,
  mailDomain,
  syntheticObjects,
  testRecipient,
} from './test-fixtures.ts';

const NOW = new Date('2026-06-01T00:00:00Z');
const DAY = 86_400_000;

function table(...objects: MailrouteObject[]): RoutingTable {
  const r = compile(objects);
  expect(r.issues).toEqual([]);
  return r.table;
}

const dual = (extra: Record<string, unknown> = {}) =>
  examplePolicy({ mode: 'Dual', secondary: 'new', dual: { scope: 'All' }, ...extra });
const tr = (name: string, address: string, extra: Record<string, unknown> = {}) =>
  testRecipient(name, { policyRef: { name: 'example-com' }, address, ...extra });

const BASE = table(exampleDomain(), dual());

function only(before: RoutingTable, after: RoutingTable, withinMs = 7 * DAY): DomainDiff {
  const d = diffTables(before, after, { now: NOW, expiringWithinMs: withinMs });
  expect(d.domains).toHaveLength(1);
  return d.domains[0]!;
}

describe('diffTables: domain fields', () => {
  it.each([
    [
      'mode',
      examplePolicy({ mode: 'Direct' }),
      [
        { field: 'mode', before: 'Dual', after: 'Direct' },
        { field: 'secondary', before: 'new', after: null },
        { field: 'dual.scope', before: 'All', after: null },
        { field: 'dual.bounces', before: 'Suppress', after: null },
      ],
    ],
    [
      'primary and secondary swapped',
      examplePolicy({ mode: 'Dual', primary: 'new', secondary: 'old' }),
      [
        { field: 'primary', before: 'old', after: 'new' },
        { field: 'secondary', before: 'new', after: 'old' },
      ],
    ],
    [
      'scope',
      dual({ dual: { scope: 'TestRecipients' } }),
      [{ field: 'dual.scope', before: 'All', after: 'TestRecipients' }],
    ],
    [
      'copyRecipientDomain and bounces',
      dual({ dual: { scope: 'All', copyRecipientDomain: 'z.example', bounces: 'Notify' } }),
      [
        { field: 'dual.copyRecipientDomain', before: null, after: 'z.example' },
        { field: 'dual.bounces', before: 'Suppress', after: 'Notify' },
      ],
    ],
    [
      'dated stages added (the policy fields become the final state)',
      examplePolicy({
        mode: 'Direct',
        primary: 'new',
        stages: [
          { name: 'trial', until: '2026-12-05T02:00:00Z', mode: 'Dual', primary: 'old', secondary: 'new' },
        ],
      }),
      [
        { field: 'mode', before: 'Dual', after: 'Direct' },
        { field: 'primary', before: 'old', after: 'new' },
        { field: 'secondary', before: 'new', after: null },
        { field: 'dual.scope', before: 'All', after: null },
        { field: 'dual.bounces', before: 'Suppress', after: null },
        {
          field: 'stages',
          before: null,
          after: 'trial until 2026-12-05T02:00:00Z: Dual old+new scope All bounces Suppress',
        },
      ],
    ],
  ])('%s', (_name, policy, fields) => {
    const d = only(BASE, table(exampleDomain(), policy));
    expect(d.change).toBe('changed');
    expect(d.fields).toEqual(fields);
    expect(d.servers).toEqual([]);
  });

  it('split', () => {
    const domain = exampleDomain({ recipientVerification: { server: 'old' } });
    const before = table(domain, dual());
    const after = table(
      domain,
      examplePolicy({ mode: 'Split', secondary: 'new', split: { unknownRecipients: 'Reject' } }),
    );
    expect(only(before, after).fields).toEqual([
      { field: 'mode', before: 'Dual', after: 'Split' },
      { field: 'dual.scope', before: 'All', after: null },
      { field: 'dual.bounces', before: 'Suppress', after: null },
      { field: 'split.unknownRecipients', before: null, after: 'Reject' },
    ]);
  });

  it('softBounce turned on, and a stage that has it', () => {
    expect(only(BASE, table(exampleDomain(), dual({ softBounce: true }))).fields).toEqual([
      { field: 'softBounce', before: false, after: true },
    ]);
    const staged = table(exampleDomain(), dual({ stages: [cutoverStage('2026-07-01T00:00:00Z')] }));
    expect(only(BASE, staged).fields).toEqual([
      { field: 'stages', before: null, after: 'cutover until 2026-07-01T00:00:00Z: Direct new softBounce' },
    ]);
  });

  it('a policy removed leaves the domain declared without a mode', () => {
    const d = only(BASE, table(exampleDomain()));
    expect(d.fields.map((f) => f.field)).toEqual([
      'policy',
      'mode',
      'primary',
      'secondary',
      'dual.scope',
      'dual.bounces',
    ]);
  });
});

describe('diffTables: servers', () => {
  const servers = (list: unknown[]) => exampleDomain({ servers: list });
  it.each([
    [
      'TLS mode',
      [
        { name: 'old', host: '10.0.0.1', tls: 'RequiredVerify' },
        { name: 'new', host: '10.0.0.2', port: 2525 },
      ],
      [
        {
          name: 'old',
          change: 'changed',
          fields: [{ field: 'tls', before: 'Opportunistic', after: 'RequiredVerify' }],
        },
      ],
    ],
    [
      'credentials',
      [
        { name: 'old', host: '10.0.0.1', tls: 'Required', authSecretRef: { name: 's' } },
        { name: 'new', host: '10.0.0.2', port: 2525 },
      ],
      [
        {
          name: 'old',
          change: 'changed',
          fields: [
            { field: 'tls', before: 'Opportunistic', after: 'Required' },
            { field: 'authSecretRef', before: null, after: 'default/s' },
          ],
        },
      ],
    ],
    [
      'host and port',
      [
        { name: 'old', host: 'mx.old.example', port: 587 },
        { name: 'new', host: '10.0.0.2', port: 2525 },
      ],
      [
        {
          name: 'old',
          change: 'changed',
          fields: [
            { field: 'host', before: '10.0.0.1', after: 'mx.old.example' },
            { field: 'port', before: 25, after: 587 },
          ],
        },
      ],
    ],
  ])('%s', (_name, list, expected) => {
    expect(only(BASE, table(servers(list), dual())).servers).toEqual(expected);
  });

  it('an added server lists the fields it has', () => {
    const after = table(
      exampleDomain({
        servers: [
          { name: 'old', host: '10.0.0.1' },
          { name: 'new', host: '10.0.0.2', port: 2525 },
          { name: 'third', host: 't.example', mx: true },
        ],
      }),
      dual(),
    );
    expect(only(BASE, after).servers).toEqual([
      {
        name: 'third',
        change: 'added',
        fields: [
          { field: 'host', before: null, after: 't.example' },
          { field: 'port', before: null, after: 25 },
          { field: 'mx', before: null, after: true },
          { field: 'tls', before: null, after: 'Opportunistic' },
          { field: 'maxConnections', before: null, after: 10 },
          { field: 'maxRecipientsPerTransaction', before: null, after: 50 },
        ],
      },
    ]);
  });
});

describe('diffTables: TestRecipients and accounts', () => {
  const trBase = table(
    exampleDomain(),
    dual({ dual: { scope: 'TestRecipients' } }),
    tr('alice', 'alice@example.com'),
    tr('bob', 'bob@example.com'),
  );

  it('added, removed and changed TestRecipients', () => {
    const after = table(
      exampleDomain(),
      dual({ dual: { scope: 'TestRecipients' } }),
      tr('alice', 'alice@example.com', { keepPrimaryCopy: false }),
      tr('carol', 'carol@example.com', { forwardTo: 'carol@z.example' }),
    );
    const d = only(trBase, after);
    expect(d.fields).toEqual([]);
    expect(d.testRecipients.added).toEqual([
      {
        address: 'carol@example.com',
        source: 'default/carol',
        forwardTo: 'carol@z.example',
        keepPrimaryCopy: true,
        expiresAt: null,
      },
    ]);
    expect(d.testRecipients.removed.map((t) => t.address)).toEqual(['bob@example.com']);
    expect(d.testRecipients.changed).toEqual([
      {
        address: 'alice@example.com',
        source: 'default/alice',
        fields: [{ field: 'keepPrimaryCopy', before: true, after: false }],
      },
    ]);
  });

  it.each([
    ['expires inside the window', '2026-06-05T00:00:00Z', 7 * DAY, ['alice@example.com']],
    ['expires after the window', '2026-06-20T00:00:00Z', 7 * DAY, []],
    ['already expired', '2026-05-01T00:00:00Z', 7 * DAY, []],
    ['a wider window', '2026-06-20T00:00:00Z', 30 * DAY, ['alice@example.com']],
  ])('expiring: %s', (_name, expiresAt, within, expected) => {
    const after = table(
      exampleDomain(),
      dual({ dual: { scope: 'TestRecipients' } }),
      tr('alice', 'alice@example.com', { expiresAt }),
    );
    const d = diffTables(after, after, { now: NOW, expiringWithinMs: within });
    // expiry alone is no change: the domain is listed as unchanged (exit code 0)
    expect(d.changed).toBe(false);
    expect(d.domains.flatMap((x) => x.expiring.map((e) => e.address))).toEqual(expected);
    expect(d.domains.every((x) => x.change === 'unchanged')).toBe(true);
    expect(d.unchangedDomains).toBe(1);
  });

  it('accounts added and removed per server', () => {
    const before = table(
      exampleDomain({ accounts: [{ server: 'new', addresses: ['a@example.com', 'b@example.com'] }] }),
      dual({ dual: { scope: 'Accounts' } }),
    );
    const after = table(
      exampleDomain({ accounts: [{ server: 'new', addresses: ['b@example.com', 'c@example.com'] }] }),
      dual({ dual: { scope: 'Accounts' } }),
    );
    expect(only(before, after).accounts).toEqual([
      { server: 'new', added: ['c@example.com'], removed: ['a@example.com'] },
    ]);
  });
});

describe('diffTables: whole tables', () => {
  it('identical tables: no change, every domain counted unchanged', () => {
    const d = diffTables(BASE, BASE, { now: NOW, expiringWithinMs: 7 * DAY });
    expect(d).toMatchObject({ changed: false, domains: [], unchangedDomains: 1, recipients: [] });
  });

  it('a domain added and one removed', () => {
    const other = mailDomain('other', {
      domain: 'other.example',
      servers: [{ name: 'mx', host: 'mx.other.example' }],
    });
    const d = diffTables(BASE, table(other), { now: NOW, expiringWithinMs: 0 });
    expect(d.changed).toBe(true);
    expect(d.domains.map((x) => [x.domain, x.change])).toEqual([
      ['example.com', 'removed'],
      ['other.example', 'added'],
    ]);
    expect(d.domains[0]!.fields.find((f) => f.field === 'mode')).toEqual({
      field: 'mode',
      before: 'Dual',
      after: null,
    });
  });

  it('recipient legs before and after come from resolve()', () => {
    const after = table(exampleDomain(), examplePolicy({ mode: 'Direct', primary: 'new' }));
    const d = diffTables(BASE, after, {
      now: NOW,
      expiringWithinMs: 0,
      recipients: ['x@example.com', 'x@elsewhere.example'],
    });
    expect(d.recipients.map((r) => [r.recipient, r.changed])).toEqual([
      ['x@example.com', true],
      ['x@elsewhere.example', false],
    ]);
    const legs = (p: { legs: { role: string; server: string }[] }) =>
      p.legs.map((l) => `${l.role}:${l.server}`);
    expect(legs(d.recipients[0]!.before)).toEqual(['primary:old', 'copy:new']);
    expect(legs(d.recipients[0]!.after)).toEqual(['primary:new']);
    expect(d.recipients[1]!.after.verdict).toBe('reject');
  });

  it('samples the changed TestRecipients and one everyone-else address per changed domain', () => {
    const before = table(
      exampleDomain(),
      dual({ dual: { scope: 'TestRecipients' } }),
      tr('someone', 'someone@example.com'),
    );
    const after = table(
      exampleDomain(),
      dual({ dual: { scope: 'TestRecipients' } }),
      tr('bob', 'bob@example.com'),
    );
    const d = diffTables(before, after, { now: NOW, expiringWithinMs: 0 });
    expect(sampleRecipients(d, 5)).toEqual([
      'someone1@example.com',
      'bob@example.com',
      'someone@example.com',
    ]);
    expect(sampleRecipients(d, 1)).toEqual(['someone1@example.com']);
    expect(sampleRecipients(d, 0)).toEqual([]);
  });

  it('a large table with one TestRecipient changed lists only that one', () => {
    const objects = syntheticObjects(200, 100);
    const before = table(...objects);
    const changed = objects.filter((o) => !(o.kind === 'TestRecipient' && o.metadata.name === 'd7-u42'));
    const start = performance.now();
    const d = diffTables(before, table(...changed), { now: NOW, expiringWithinMs: 7 * DAY });
    expect(performance.now() - start).toBeLessThan(2_000);
    expect(d.unchangedDomains).toBe(199);
    expect(d.domains).toHaveLength(1);
    expect(d.domains[0]!.testRecipients.removed.map((t) => t.address)).toEqual(['user42@d7.example']);
  });
});
