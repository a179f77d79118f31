// `mailroute demo` (what `npm start` runs): a relay on 127.0.0.1:2525 with examples/demo (example.com, Dual scope
// All: `old` on 127.0.0.1:2601 is the mailbox of record, `new` on 127.0.0.1:2602 gets a copy), and two local
// destination servers that store what they receive as .eml files under ./demo-mail/old and ./demo-mail/new.
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SMTPServer } from 'smtp-server';
import { parseRelayConfig } from '../../relay/config.ts';

const USAGE = `usage: mailroute demo [--listen HOST:PORT] [--http HOST:PORT] [--admin HOST:PORT] [--mail-dir DIR]

Starts a relay on the built-in example (examples/demo: example.com, Dual delivery to "old" 127.0.0.1:2601 with a
copy to "new" 127.0.0.1:2602) and the two destination servers, which store each message as a .eml file.
`;

export interface MailStore {
  readonly name: string;
  readonly dir: string;
  count: number;
  close(): Promise<void>;
}

/** A destination server that writes every message it accepts to dir as <time>-<n>.eml (write, rename). */
export async function startMailStore(name: string, port: number, dir: string): Promise<MailStore> {
  await mkdir(dir, { recursive: true });
  let seq = 0;
  const store: MailStore = { name, dir, count: 0, close: () => Promise.resolve() };
  const server = new SMTPServer({
    name: `${name}.demo`,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    greetingDelay: 0,
    size: 64 * 1024 * 1024,
    logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const to = session.envelope.rcptTo.map((r) => r.address).join(', ');
        const from = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address;
        const file = join(dir, `${Date.now()}-${String(++seq).padStart(4, '0')}.eml`);
        // The envelope goes in front as Return-Path / X-Envelope-To, as a delivery agent would add.
        const data = Buffer.concat([
          Buffer.from(`Return-Path: <${from}>\r\nX-Envelope-To: ${to}\r\n`),
          ...chunks,
        ]);
        writeFile(`${file}.tmp`, data)
          .then(() => rename(`${file}.tmp`, file))
          .then(
            () => {
              store.count++;
              process.stdout.write(`[${name}] stored ${file} (to ${to})\n`);
              cb(null, `stored as ${file}`);
            },
            (err: unknown) =>
              cb(Object.assign(new Error(`cannot store: ${String(err)}`), { responseCode: 451 })),
          );
      });
    },
  });
  await new Promise<void>((ok, fail) => {
    server.server.once('error', fail);
    server.listen(port, '127.0.0.1', () => ok());
  });
  store.close = () => new Promise<void>((ok) => server.close(() => ok()));
  return store;
}

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string', default: '127.0.0.1:2525' },
        http: { type: 'string', default: '127.0.0.1:9090' },
        admin: { type: 'string', default: '127.0.0.1:9091' },
        'mail-dir': { type: 'string', default: './demo-mail' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    process.stderr.write(`mailroute demo: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  const mailDir = resolve(values['mail-dir']);
  const manifests = resolve(import.meta.dirname, '../../examples/demo');
  const parsed = parseRelayConfig(
    [
      '--manifests',
      manifests,
      '--listen',
      values.listen,
      '--http',
      values.http,
      '--admin',
      values.admin,
      '--spool',
      join(mailDir, 'spool'),
      '--hostname',
      'relay.demo',
      '--retry-schedule',
      '5s,30s,1m',
      '--shutdown-timeout',
      '5s',
    ],
    {},
  );
  if (parsed.ok !== true) {
    process.stderr.write(`mailroute demo: ${parsed.ok === false ? parsed.error : 'bad flags'}\n`);
    return 2;
  }
  const config = parsed.config;
  let stores: MailStore[];
  try {
    stores = [
      await startMailStore('old', 2601, join(mailDir, 'old')),
      await startMailStore('new', 2602, join(mailDir, 'new')),
    ];
  } catch (err) {
    process.stderr.write(
      `mailroute demo: cannot start the destination servers on 127.0.0.1:2601/2602: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    return 1;
  }
  const { runRelay } = await import('../../relay/relay.ts');
  const { pino } = await import('pino');
  let relay;
  try {
    relay = await runRelay(config, { handleSignals: true, logger: pino({ level: 'warn' }) });
  } catch (err) {
    await Promise.all(stores.map((s) => s.close()));
    process.stderr.write(`mailroute demo: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  const smtp = `${relay.smtp.host}:${relay.smtp.port}`;
  process.stdout.write(`
mailroute demo
  relay          smtp://${smtp}   (example.com: Dual, scope All)
  metrics        http://${relay.http.host}:${relay.http.port}/metrics   /readyz
  destinations   old 127.0.0.1:2601 -> ${join(mailDir, 'old')}
                 new 127.0.0.1:2602 -> ${join(mailDir, 'new')}

Send a message (either line), then look in ${mailDir}/old and ${mailDir}/new: one copy each.

  swaks --server ${smtp} --from you@sender.test --to alice@example.com

  printf 'Subject: hello\\r\\n\\r\\nhello from curl\\r\\n' | curl -s smtp://${smtp} --mail-from you@sender.test --mail-rcpt alice@example.com -T -

A domain the relay does not serve is refused (no open relay):
  swaks --server ${smtp} --to bob@elsewhere.test      # 554 5.7.1 relay access denied

Ctrl-C stops it; what is still queued stays in ${join(mailDir, 'spool')}.
`);
  await relay.closed;
  await Promise.all(stores.map((s) => s.close()));
  return 0;
}
