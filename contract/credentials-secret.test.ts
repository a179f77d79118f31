import { describe, expect, it } from 'vitest';
import type { RoutingTable } from '../routing/model.ts';
import {
  buildCredentialsData,
  credentialsSecret,
  CREDENTIALS_HASH_ANNOTATION,
  parseCredentialsData,
  readCredentials,
  referencedSecrets,
  type SecretLookup,
} from './credentials-secret.ts';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('readCredentials', () => {
  const optedIn = { labels: { 'mailroute.io/smtp-auth': 'true' } };
  it.each([
    ['absent', undefined, { state: 'missing' }],
    [
      'both keys',
      { metadata: optedIn, data: { username: b64('u'), password: b64('p') } },
      { state: 'ok', credentials: { username: 'u', password: 'p' } },
    ],
    [
      'empty password allowed',
      { metadata: optedIn, data: { username: b64('u'), password: '' } },
      { state: 'ok', credentials: { username: 'u', password: '' } },
    ],
    [
      'no password',
      { metadata: optedIn, data: { username: b64('u') } },
      { state: 'invalid', reason: 'no key password' },
    ],
    ['no data', { metadata: optedIn }, { state: 'invalid', reason: 'no key username, password' }],
    [
      'empty username',
      { metadata: optedIn, data: { username: '', password: b64('p') } },
      { state: 'invalid', reason: 'username is empty' },
    ],
    // Not opted in: missing, whatever it holds; its keys are never looked at (no "no key password" for it).
    [
      'no label',
      { data: { username: b64('app'), password: b64('database-password') } },
      { state: 'missing' },
    ],
    ['no label, no keys', { data: { 'db-password': b64('x') } }, { state: 'missing' }],
    [
      'label with another value',
      {
        metadata: { labels: { 'mailroute.io/smtp-auth': 'yes' } },
        data: { username: b64('u'), password: b64('p') },
      },
      { state: 'missing' },
    ],
  ] as const)('%s', (_name, secret, want) => {
    expect(readCredentials(secret)).toEqual(want);
  });
});

describe('buildCredentialsData / parseCredentialsData', () => {
  const store: Record<string, SecretLookup> = {
    'mail/smtp-auth': {
      state: 'ok',
      credentials: { username: 'relay@example.com', password: 'pä:ss\nword' },
    },
    'mail/smtp.v2': { state: 'ok', credentials: { username: 'u2', password: 'p2' } },
    'tenant/gone': { state: 'missing' },
    'tenant/bad': { state: 'invalid', reason: 'no key password' },
    'other/hidden': { state: 'unknown' },
  };
  const lookup = (k: string): SecretLookup => store[k] ?? { state: 'missing' };

  it('puts <namespace>.<name>.username|password for the usable Secrets, reports the others, round-trips', () => {
    const built = buildCredentialsData(
      ['tenant/gone', 'mail/smtp.v2', 'mail/smtp-auth', 'tenant/bad', 'other/hidden', 'mail/smtp-auth'],
      lookup,
    );
    expect(Object.keys(built.data)).toEqual([
      'mail.smtp-auth.password',
      'mail.smtp-auth.username',
      'mail.smtp.v2.password',
      'mail.smtp.v2.username',
    ]);
    expect(built.skipped).toEqual([
      { secret: 'other/hidden', reason: 'not readable (outside --secret-namespaces)' },
      { secret: 'tenant/bad', reason: 'no key password' },
      { secret: 'tenant/gone', reason: 'not found or not labelled mailroute.io/smtp-auth: "true"' },
    ]);
    const parsed = parseCredentialsData(built.data);
    expect(parsed.errors).toEqual([]);
    expect([...parsed.secrets]).toEqual([
      ['mail/smtp-auth', { username: 'relay@example.com', password: 'pä:ss\nword' }],
      ['mail/smtp.v2', { username: 'u2', password: 'p2' }],
    ]);
  });

  it('hashes the data: same input same hash, any change another hash; empty refs give empty data', () => {
    const a = buildCredentialsData(['mail/smtp-auth'], lookup);
    expect(buildCredentialsData(['mail/smtp-auth'], lookup).hash).toBe(a.hash);
    const changed = buildCredentialsData(['mail/smtp-auth'], () => ({
      state: 'ok',
      credentials: { username: 'relay@example.com', password: 'other' },
    }));
    expect(changed.hash).not.toBe(a.hash);
    const empty = buildCredentialsData([], lookup);
    expect(empty.data).toEqual({});
    expect(empty.hash).not.toBe(a.hash);
    const obj = credentialsSecret('mailroute-system', a);
    expect(obj).toMatchObject({
      kind: 'Secret',
      type: 'Opaque',
      metadata: {
        name: 'mailroute-credentials',
        namespace: 'mailroute-system',
        annotations: { [CREDENTIALS_HASH_ANNOTATION]: a.hash },
      },
      data: a.data,
    });
    expect(JSON.stringify(obj)).not.toContain('relay@example.com');
  });

  it('reports keys that do not follow the format and half entries', () => {
    const p = parseCredentialsData({
      nodots: b64('x'),
      'Mail.x.username': b64('x'),
      'mail.only-user.username': b64('u'),
      'mail.ok.username': b64('u'),
      'mail.ok.password': b64('p'),
    });
    expect([...p.secrets.keys()]).toEqual(['mail/ok']);
    expect(p.errors).toEqual([
      'nodots: not <namespace>.<name>.username|password',
      'Mail.x.username: not <namespace>.<name>.username|password',
      'mail/only-user: password missing',
    ]);
    expect(parseCredentialsData(undefined)).toEqual({ secrets: new Map(), errors: [] });
  });
});

describe('referencedSecrets', () => {
  it('lists the authSecretRef of every server in the table once, sorted', () => {
    const server = (name: string, ref?: { namespace: string; name: string }) => ({
      name,
      host: '127.0.0.1',
      port: 25,
      tls: 'None',
      maxConnections: 10,
      ...(ref ? { authSecretRef: ref } : {}),
    });
    const table = {
      domains: {
        'b.example': { servers: { x: server('x', { namespace: 'b', name: 's' }), y: server('y') } },
        'a.example': {
          servers: {
            x: server('x', { namespace: 'a', name: 's' }),
            z: server('z', { namespace: 'b', name: 's' }),
          },
        },
      },
    } as unknown as RoutingTable;
    expect(referencedSecrets(table)).toEqual(['a/s', 'b/s']);
  });
});
