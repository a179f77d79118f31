// CPU of the relay's ContentScanner on 100 KiB messages (docs/perf.md §5): node bench/relay/content-scan.bench.ts
import { ContentScanner } from '../../relay/inbound/content.ts';
const line = 'x'.repeat(76) + '\r\n';
const body = Buffer.from('From: a@b\r\nTo: c@d\r\nSubject: s\r\n\r\n' + line.repeat(Math.ceil(102400 / 78)));
const chunks: Buffer[] = [];
for (let i = 0; i < body.length; i += 16384) chunks.push(body.subarray(i, i + 16384));
const run = (n: number, maxLineLength: number): number => {
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < n; k++) {
    const s = new ContentScanner({
      bareLf: 'reject',
      maxBytes: 26214400,
      hopLimit: 50,
      maxLineLength,
    });
    for (const c of chunks) s.write(c);
    s.end();
  }
  return Number(process.hrtime.bigint() - t0) / 1e6 / n;
};
// the relay's default limit (--max-line-length 65536), then the RFC 5322 one a site may set (998)
for (const limit of [65536, 998]) {
  run(50, limit);
  const c0 = process.cpuUsage();
  const ms = run(300, limit);
  const cpu = process.cpuUsage(c0);
  console.log(
    `ContentScanner 100 KiB, --max-line-length ${limit}: ${ms.toFixed(3)} ms wall/msg, ${((cpu.user + cpu.system) / 1000 / 300).toFixed(3)} ms CPU/msg`,
  );
}
