// mailroute preflight -f PATH... [--probe ADDRESS] [--send] [--from ADDRESS] [--domain D]... [--server NAME]...
// Runs the operator's preflight probe (operator/preflight/) from this machine, without a cluster, on every server of
// every MailDomain in the manifests: connect, EHLO, STARTTLS and the certificate check per the server's TLS mode,
// AUTH when it has an authSecretRef (Secrets come from the manifests, as `relay --manifests` reads them), and with a
// probe address (--probe, else spec.servers[].probe.address) MAIL FROM + RCPT TO it, or with --send a probe message
// carrying `X-Mailroute-Probe: <id>`. Prints the local address each connection left from (the address the server
// must allowlist). Exit 0 when every server passes, 1 when one fails, 2 on usage or manifest errors.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { parseAddress } from '../../routing/address.ts';
import { createSmtpProbe, type ProbeOutcome, type ProbeTarget } from '../../operator/preflight/probe.ts';
import {
  serverPasses,
  serverStatus,
  viewMailDomain,
  type DomainView,
} from '../../operator/preflight/status.ts';
import { SMTP_AUTH_LABEL, SMTP_AUTH_LABEL_VALUE } from '../../routing/secret-opt-in.ts';
import { parseDuration } from '../../lib/flags.ts';
import { loadAndCompile, usableSecrets } from '../../lib/manifests.ts';
import {
  fileFlag,
  filesFrom,
  limitFlags,
  limitsFrom,
  guard,
  parseFlags,
  UsageError,
} from './offline-common.ts';

const USAGE = `usage: mailroute preflight -f PATH... [--probe ADDRESS] [--send] [--from ADDRESS]
       [--domain DOMAIN]... [--server NAME]... [--timeout 10s] [--hostname NAME] [--ca FILE] [-o text|json]
exit: 0 every server passes, 1 a server fails, 2 usage or manifest errors
`;

export interface PreflightRow {
  domain: string;
  mailDomain: string;
  server: string;
  target: ProbeTarget;
  outcome: ProbeOutcome;
  ok: boolean;
}

/** A server passes its preflight: reachable, TLS as its mode asks, AUTH ok (when tried), the probe address accepted. */
export function rowPasses(outcome: ProbeOutcome): boolean {
  return (
    serverPasses(serverStatus('', outcome, new Date(0))) && (outcome.auth === undefined || outcome.auth.ok)
  );
}

/** The text report of one server. Pure. */
export function rowText(r: PreflightRow): string {
  const t = r.target;
  const where = t.mx ? `MX of ${t.host}, port ${t.port}` : `${t.host}:${t.port}`;
  const o = r.outcome;
  const lines = [`${r.domain} ${r.server} (${where}, tls ${t.tls}): ${r.ok ? 'ok' : 'FAIL'}`];
  if (o.localAddress !== undefined)
    lines.push(`  from ${o.localAddress} (the address ${r.server} must accept mail from)`);
  lines.push(`  ${o.reachable ? '' : 'unreachable: '}${o.message}`);
  if (o.auth !== undefined) lines.push(`  AUTH: ${o.auth.ok ? 'ok' : 'failed'}: ${o.auth.message}`);
  const a = o.acceptance;
  if (a !== undefined) {
    lines.push(`  probe RCPT TO:<${a.address}>: ${a.result}: ${a.reply}`);
    if (a.sent !== undefined) lines.push(`  sent: ${a.sent}`);
  }
  return lines.join('\n');
}

function credentialsFor(
  view: DomainView,
  secretName: string,
  secrets: ReadonlyMap<string, { username: string; password: string }>,
): ProbeTarget['credentials'] {
  const found = secrets.get(`${view.namespace}/${secretName}`);
  if (found !== undefined) return { user: found.username, pass: found.password };
  return {
    error: `Secret ${view.namespace}/${secretName} is not among the manifests with the keys username and password and the label ${SMTP_AUTH_LABEL}: "${SMTP_AUTH_LABEL_VALUE}"`,
  };
}

export async function run(argv: string[]): Promise<number> {
  // exit 1 is an answer here (a server failed), so any error exits 2
  return guard('preflight', USAGE, () => preflight(argv), 2);
}

async function preflight(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      ...fileFlag,
      ...limitFlags,
      probe: { type: 'string' },
      send: { type: 'boolean' },
      from: { type: 'string' },
      domain: { type: 'string', multiple: true },
      server: { type: 'string', multiple: true },
      timeout: { type: 'string' },
      hostname: { type: 'string' },
      ca: { type: 'string' },
      output: { type: 'string', short: 'o', default: 'text' },
      help: { type: 'boolean', short: 'h' },
    },
    'preflight',
  );
  if (values.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  const output = values.output;
  if (output !== 'text' && output !== 'json')
    throw new UsageError('mailroute preflight: -o must be text or json');
  const checkAddress = (flag: string, v: string | undefined): string | undefined => {
    if (v === undefined) return undefined;
    const p = parseAddress(v);
    if (!p.ok)
      throw new UsageError(`mailroute preflight: ${flag}: not an email address: ${JSON.stringify(v)}`);
    return p.address;
  };
  const probeAddress = checkAddress('--probe', values.probe);
  const sender = values.from === '' ? '' : (checkAddress('--from', values.from) ?? '');
  const timeoutMs = parseDuration(values.timeout ?? '10s');
  if (timeoutMs === undefined || timeoutMs <= 0)
    throw new UsageError(
      `mailroute preflight: --timeout: expected a duration like 10s, got ${values.timeout}`,
    );
  let ca: string | undefined;
  if (values.ca !== undefined) {
    try {
      ca = await readFile(values.ca, 'utf8');
    } catch (err) {
      throw new UsageError(
        `mailroute preflight: --ca: cannot read ${values.ca}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      );
    }
  }

  const compiled = await loadAndCompile(filesFrom(values, 'preflight'), limitsFrom(values, 'preflight'));
  if (compiled.errorLines.length > 0) {
    process.stderr.write(compiled.errorLines.map((l) => `${l}\n`).join(''));
    return 2;
  }
  const { secrets, warnings } = usableSecrets(compiled);
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);

  const domains = new Set((values.domain ?? []).map((d) => d.toLowerCase()));
  const names = new Set(values.server ?? []);
  const views = compiled.loaded.objects
    .filter((o) => o.kind === 'MailDomain')
    .map(viewMailDomain)
    .filter((v): v is DomainView => v !== undefined && (domains.size === 0 || domains.has(v.domain ?? '')))
    .sort((a, b) => (a.domain ?? '').localeCompare(b.domain ?? '') || a.name.localeCompare(b.name));
  const id = `mailroute-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const work: Omit<PreflightRow, 'outcome' | 'ok'>[] = [];
  for (const v of views)
    for (const s of v.servers) {
      if (names.size > 0 && !names.has(s.name)) continue;
      const address = probeAddress ?? s.probeAddress;
      const target: ProbeTarget = {
        host: s.host,
        port: s.port,
        mx: s.mx,
        tls: s.tls,
        ...(s.allowPlaintextAuth === true ? { allowPlaintextAuth: true } : {}),
        ...(s.authSecretRef !== undefined
          ? { credentials: credentialsFor(v, s.authSecretRef, secrets) }
          : {}),
        ...(address !== undefined
          ? {
              acceptance: {
                address,
                sender,
                ...(values.send === true ? { send: { id, date: new Date() } } : {}),
              },
            }
          : {}),
      };
      work.push({
        domain: v.domain ?? v.name,
        mailDomain: `${v.namespace}/${v.name}`,
        server: s.name,
        target,
      });
    }
  if (work.length === 0) {
    process.stderr.write('mailroute preflight: no MailDomain server matches\n');
    return 2;
  }
  if (values.send === true && !work.some((w) => w.target.acceptance !== undefined))
    throw new UsageError('mailroute preflight: --send needs --probe ADDRESS or spec.servers[].probe.address');

  const probe = createSmtpProbe({
    timeoutMs,
    heloName: values.hostname ?? osHostname(),
    ...(ca !== undefined ? { ca } : {}),
  });
  // One server at a time, in order: the report reads top to bottom, and no server gets a burst from us.
  const rows: PreflightRow[] = [];
  for (const w of work) {
    const outcome = await probe(w.target);
    const row = { ...w, outcome, ok: rowPasses(outcome) };
    rows.push(row);
    if (output === 'text') process.stdout.write(`${rowText(row)}\n`);
  }
  const failed = rows.filter((r) => !r.ok).length;
  if (output === 'json') {
    const json = rows.map((r) => ({
      domain: r.domain,
      mailDomain: r.mailDomain,
      server: r.server,
      host: r.target.host,
      port: r.target.port,
      mx: r.target.mx,
      tlsMode: r.target.tls,
      ok: r.ok,
      ...r.outcome,
    }));
    process.stdout.write(
      `${JSON.stringify({ probeId: values.send === true ? id : null, servers: json }, null, 2)}\n`,
    );
  } else {
    const sent = values.send === true ? `; probe messages carry X-Mailroute-Probe: ${id}` : '';
    process.stdout.write(
      `${rows.length} server${rows.length === 1 ? '' : 's'}: ${rows.length - failed} ok, ${failed} failed${sent}\n`,
    );
  }
  return failed > 0 ? 1 : 0;
}
