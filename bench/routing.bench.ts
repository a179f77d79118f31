// Routing core benchmark (npm run bench:routing): compile 1,000 domains with 100,000 TestRecipients (target
// < 1 s) and resolve (target < 2 µs per lookup). Prints a Markdown table for docs/benchmarks.md.
import { cpus, loadavg } from 'node:os';
import { compile } from '../routing/compile.ts';
import { buildIndex, resolve } from '../routing/resolve.ts';
import { syntheticObjects } from '../routing/test-fixtures.ts';
import { cpuModel } from './machine.ts';

const DOMAINS = Number(process.env['BENCH_DOMAINS'] ?? 1000);
const PER_DOMAIN = Number(process.env['BENCH_PER_DOMAIN'] ?? 100);
const COMPILE_RUNS = Number(process.env['BENCH_COMPILE_RUNS'] ?? 7);
const LOOKUPS = Number(process.env['BENCH_LOOKUPS'] ?? 2_000_000);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

let t = performance.now();
const objects = syntheticObjects(DOMAINS, PER_DOMAIN);
const setupMs = performance.now() - t;
process.stderr.write(`built and validated ${objects.length} objects in ${setupMs.toFixed(0)} ms\n`);

// compile: warm up once, then the median of several runs (input shuffled between runs, output must not change)
const first = compile(objects);
if (first.issues.length > 0) throw new Error(`unexpected issues: ${first.issues[0]?.message}`);
const compileMs: number[] = [];
const compileCpuMs: number[] = [];
for (let i = 0; i < COMPILE_RUNS; i++) {
  const input = [...objects];
  for (let j = input.length - 1; j > 0; j--) {
    const k = Math.floor(Math.random() * (j + 1));
    [input[j], input[k]] = [input[k]!, input[j]!];
  }
  const c0 = process.cpuUsage();
  t = performance.now();
  const r = compile(input);
  compileMs.push(performance.now() - t);
  const c = process.cpuUsage(c0);
  compileCpuMs.push((c.user + c.system) / 1000);
  if (r.revision !== first.revision) throw new Error('compile is not deterministic');
}

t = performance.now();
const index = buildIndex(first.table);
const indexMs = performance.now() - t;

// resolve: a mix of test recipients (copy legs), other recipients of declared domains, and undeclared domains
const recipients: string[] = [];
for (let i = 0; i < 10_000; i++) {
  const d = i % DOMAINS;
  const u = (i * 7919) % (PER_DOMAIN * 2); // half of them are test recipients
  recipients.push(i % 10 === 9 ? `user${u}@nowhere${d}.example` : `user${u}@d${d}.example`);
}
const now = new Date('2026-06-01T00:00:00Z');
const ctx = { now };
let legs = 0;
for (let i = 0; i < 200_000; i++) legs += resolve(index, recipients[i % recipients.length]!, ctx).legs.length; // warm-up
const resolveNs: number[] = [];
const resolveCpuNs: number[] = [];
for (let run = 0; run < 5; run++) {
  legs = 0;
  const c0 = process.cpuUsage();
  t = performance.now();
  for (let i = 0; i < LOOKUPS; i++)
    legs += resolve(index, recipients[i % recipients.length]!, ctx).legs.length;
  resolveNs.push(((performance.now() - t) * 1e6) / LOOKUPS);
  const c = process.cpuUsage(c0);
  resolveCpuNs.push(((c.user + c.system) * 1e3) / LOOKUPS);
}
if (legs === 0) throw new Error('no legs');

const kib = Buffer.byteLength(first.json) / 1024;
const rows = [
  [
    'objects',
    `${DOMAINS} MailDomains + ${DOMAINS} DeliveryPolicies + ${DOMAINS * PER_DOMAIN} TestRecipients`,
  ],
  [
    'compile (median of ' + String(COMPILE_RUNS) + ')',
    `${median(compileMs).toFixed(0)} ms wall, ${median(compileCpuMs).toFixed(0)} ms CPU (wall min ${Math.min(...compileMs).toFixed(0)}, max ${Math.max(...compileMs).toFixed(0)})`,
  ],
  ['canonical table size', `${(kib / 1024).toFixed(1)} MiB`],
  ['buildIndex', `${indexMs.toFixed(0)} ms`],
  [
    'resolve (median of 5 × ' + String(LOOKUPS) + ')',
    `${median(resolveNs).toFixed(0)} ns/lookup wall, ${median(resolveCpuNs).toFixed(0)} ns CPU (${(1e9 / median(resolveNs) / 1e6).toFixed(2)} M lookups/s)`,
  ],
  [
    'machine',
    `${cpuModel()}, ${cpus().length} cores, Node ${process.version}, load average ${loadavg()[0]!.toFixed(1)}`,
  ],
];
process.stdout.write(
  `| measure | result |\n|---|---|\n${rows.map(([a, b]) => `| ${a} | ${b} |`).join('\n')}\n`,
);
