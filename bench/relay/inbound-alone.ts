// The inbound SMTP server alone, without the relay behind it: smtp-server with the relay's options and callbacks that
// accept everything at once, or a minimal server that knows only what smtp-source sends, under the same smtp-source
// load (a new connection per message). Prints messages a second and the server process's CPU per message, so that
// what smtp-server itself costs is measured without the relay's own work around it (docs/perf.md, "An inbound server
// of the relay's own").
//
//   node bench/relay/inbound-alone.ts --server smtp-server|minimal [--messages 20000] [--sessions 20] [--size 4096]
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { SMTPServer } from 'smtp-server';
import { relayLikeSmtpServerOptions } from './smtp-server-options.ts';

const { values } = parseArgs({
  options: {
    server: { type: 'string', default: 'smtp-server' },
    messages: { type: 'string', default: '20000' },
    sessions: { type: 'string', default: '20' },
    size: { type: 'string', default: '4096' },
  },
});
const messages = Number(values.messages);
const sessions = Number(values.sessions);
const size = Number(values.size);
if (![messages, sessions, size].every((n) => Number.isInteger(n) && n > 0))
  throw new Error('--messages, --sessions and --size take positive integers');

let received = 0;

/** smtp-server as relay/inbound/server.ts configures it (no TLS), every callback accepting at once. */
function smtpServer(): { server: Server; close: () => void } {
  const s = new SMTPServer({
    ...relayLikeSmtpServerOptions('bench.test'),
    onConnect: (_session, cb) => cb(),
    onMailFrom: (_address, _session, cb) => cb(),
    onRcptTo: (_address, _session, cb) => cb(),
    onData(stream, _session, cb) {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        received++;
        cb(null, '2.0.0 queued as x');
      });
    },
  });
  return { server: s.server, close: () => s.close(() => undefined) };
}

/** The least a server does for smtp-source: lines, the five commands it sends, the end of DATA. */
function minimalServer(): { server: Server; close: () => void } {
  const end = Buffer.from('\r\n.\r\n');
  const server = createServer((sock: Socket) => {
    sock.setNoDelay(true);
    let inData = false;
    let line = '';
    let tail: Buffer = Buffer.alloc(0);
    sock.on('error', () => undefined);
    sock.write('220 bench.test ESMTP mailroute\r\n');
    sock.on('data', (chunk: Buffer) => {
      if (inData) {
        const seen = tail.length > 0 ? Buffer.concat([tail, chunk]) : chunk;
        if (seen.indexOf(end) === -1) {
          tail = seen.subarray(Math.max(0, seen.length - 4));
          return;
        }
        inData = false;
        tail = Buffer.alloc(0);
        received++;
        sock.write('250 2.0.0 queued as x\r\n');
        return;
      }
      line += chunk.toString('latin1');
      for (let i = line.indexOf('\n'); i !== -1; i = line.indexOf('\n')) {
        const verb = line.slice(0, 4).toUpperCase();
        line = line.slice(i + 1);
        if (verb === 'EHLO' || verb === 'HELO')
          sock.write('250-bench.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
        else if (verb === 'MAIL') sock.write('250 2.1.0 Accepted\r\n');
        else if (verb === 'RCPT') sock.write('250 2.1.5 Accepted\r\n');
        else if (verb === 'DATA') {
          sock.write('354 End data with <CR><LF>.<CR><LF>\r\n');
          inData = true;
        } else if (verb === 'QUIT') sock.end('221 2.0.0 Bye\r\n');
        else sock.write('502 5.5.1 Error: command not implemented\r\n');
      }
    });
  });
  return { server, close: () => server.close() };
}

const made = values.server === 'minimal' ? minimalServer() : smtpServer();
if (values.server !== 'minimal' && values.server !== 'smtp-server')
  throw new Error(`--server: smtp-server or minimal, not ${values.server}`);
await new Promise<void>((resolve) => made.server.listen(0, '127.0.0.1', resolve));
const port = (made.server.address() as AddressInfo).port;

const cpu0 = process.cpuUsage();
const t0 = performance.now();
const code = await new Promise<number | null>((resolve, reject) => {
  const p = spawn(
    '/usr/sbin/smtp-source',
    [
      '-s',
      String(sessions),
      '-l',
      String(size),
      '-m',
      String(messages),
      '-f',
      'a@b.test',
      '-t',
      'c@d.test',
      `127.0.0.1:${port}`,
    ],
    { stdio: 'inherit' },
  );
  p.on('error', reject);
  p.on('exit', resolve);
});
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
made.close();
if (code !== 0) throw new Error(`smtp-source exited with ${code}`);
if (received !== messages) throw new Error(`received ${received} of ${messages} messages`);
const perMessage = (us: number): string => (us / messages).toFixed(1);
console.log(
  `${values.server}: ${messages} messages in ${seconds.toFixed(2)} s (${Math.round(messages / seconds)} msg/s); ` +
    `CPU per message ${perMessage(cpu.user + cpu.system)} µs (user ${perMessage(cpu.user)}, system ${perMessage(cpu.system)})`,
);
