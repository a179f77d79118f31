// smtp-server's DATA parser alone: CPU time to find the end of DATA in N messages of a given size, fed in 64 KiB
// chunks as a socket delivers them (the relay's dual 100 KiB workload). Prints one JSON line.
// usage: node bench/smtp-data-end.ts [--messages 2000] [--size 102400]
import { parseArgs } from 'node:util';
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

const { values: v } = parseArgs({
  options: { messages: { type: 'string', default: '2000' }, size: { type: 'string', default: '102400' } },
});
const messages = Number(v.messages);
const line = 'x'.repeat(76);
const body = Array.from({ length: Math.ceil(Number(v.size) / 78) }, () => line).join('\r\n');
const input = Buffer.from(`${body}\r\n.\r\n`, 'latin1');
const chunks: Buffer[] = [];
for (let off = 0; off < input.length; off += 65536) chunks.push(input.subarray(off, off + 65536));

const parser = new SMTPStream();
parser.oncommand = (_cmd: Buffer, cb?: () => void): void => cb?.();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
let bytes = 0;
for (let n = 0; n < messages; n++) {
  const data = parser.startDataMode(Infinity);
  data.on('data', (b: Buffer) => (bytes += b.length));
  const ended = new Promise<void>((resolve) => data.once('end', resolve));
  // the write that carries the end of DATA completes once the application continues (as smtp-server does after 250)
  const written = chunks.map((c) => new Promise<void>((resolve) => parser.write(c, () => resolve())));
  await ended;
  parser.continue();
  await Promise.all(written);
}
const cpu = process.cpuUsage(cpu0);
console.log(
  JSON.stringify({
    messages,
    size: input.length,
    bytes,
    cpuUsPerMessage: Math.round((cpu.user + cpu.system) / messages),
    wallMs: Math.round(performance.now() - t0),
  }),
);
