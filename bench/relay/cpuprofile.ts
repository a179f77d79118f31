// Summarizes a V8 .cpuprofile (node --cpu-prof): self and inclusive time by function, self time by package or file,
// and time by the nearest frame of the project's own code on the stack (what in the relay, or in the benchmark's
// floor, made the library or system call the time went to). Usage: node bench/relay/cpuprofile.ts FILE.cpuprofile
// [--top N]
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface Row {
  readonly key: string;
  readonly ms: number;
  readonly pct: number;
}

/** Where a script URL belongs: a package under node_modules, node's own code, or a file of the project. */
export function ownerOf(url: string): string {
  if (url === '') return '(native/VM)';
  if (url.startsWith('node:')) return 'node:' + (url.slice(5).split('/')[0] ?? '');
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') === true ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? url);
  }
  const m = /\/(relay|lib|routing|contract|operator|cli|bench|test)\/(.+)$/.exec(url);
  return m ? `${m[1]}/${m[2]}` : url;
}

/** The project's own sources (not a dependency, not node's), the benchmark's floor included. */
export const isOwnUrl = (url: string): boolean =>
  (/(?<!\/bench)\/(relay|lib|routing|contract|operator|cli)\//.test(url) ||
    url.includes('/bench/relay/floor-')) &&
  !url.includes('/node_modules/');

function frameKey(f: CallFrame): string {
  const file = f.url === '' ? '' : ` ${ownerOf(f.url)}:${f.lineNumber + 1}`;
  return `${f.functionName === '' ? '(anonymous)' : f.functionName}${file}`;
}

export function summarizeProfile(
  p: CpuProfile,
  top: number,
): { totalMs: number; self: Row[]; inclusive: Row[]; owners: Row[]; nearest: Row[] } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  p.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const idle = new Set(['(idle)', '(program)', '(garbage collector)']);

  const selfByKey = new Map<string, number>();
  const ownerSelf = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    const key = idle.has(n.callFrame.functionName) ? n.callFrame.functionName : frameKey(n.callFrame);
    selfByKey.set(key, (selfByKey.get(key) ?? 0) + us);
    const owner = idle.has(n.callFrame.functionName) ? n.callFrame.functionName : ownerOf(n.callFrame.url);
    ownerSelf.set(owner, (ownerSelf.get(owner) ?? 0) + us);
  }

  // Inclusive: walk from the root, counting each function once per stack (recursion is not double counted).
  const inclusive = new Map<string, number>();
  const root = p.nodes[0];
  const totals = new Map<number, number>();
  const total = (id: number): number => {
    const cached = totals.get(id);
    if (cached !== undefined) return cached;
    const n = byId.get(id);
    const t = (selfUs.get(id) ?? 0) + (n?.children ?? []).reduce((a, c) => a + total(c), 0);
    totals.set(id, t);
    return t;
  };
  const walk = (id: number, onStack: Set<string>): void => {
    const n = byId.get(id);
    if (!n) return;
    const key = frameKey(n.callFrame);
    const fresh = !onStack.has(key);
    if (fresh) {
      inclusive.set(key, (inclusive.get(key) ?? 0) + total(id));
      onStack.add(key);
    }
    for (const c of n.children ?? []) walk(c, onStack);
    if (fresh) onStack.delete(key);
  };
  if (root) walk(root.id, new Set());
  inclusive.delete(root ? frameKey(root.callFrame) : '');

  // Nearest own frame: each sample goes to the innermost frame of the project on its stack; a sample with none goes
  // to the package (or node) of its innermost frame, and idle, program and GC stay themselves.
  const nearest = new Map<string, number>();
  const attribute = (id: number, own: string | undefined, lib: string | undefined): void => {
    const n = byId.get(id);
    if (!n) return;
    const f = n.callFrame;
    const mine = isOwnUrl(f.url) ? frameKey(f) : own;
    const theirs = f.url.includes('/node_modules/') ? ownerOf(f.url) : lib;
    const us = selfUs.get(id) ?? 0;
    if (us > 0) {
      const key = idle.has(f.functionName) ? f.functionName : (mine ?? `[no own frame] ${theirs ?? 'node'}`);
      nearest.set(key, (nearest.get(key) ?? 0) + us);
    }
    for (const c of n.children ?? []) attribute(c, mine, theirs);
  };
  if (root) attribute(root.id, undefined, undefined);

  const rows = (m: Map<string, number>): Row[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, us]) => ({ key, ms: us / 1000, pct: totalUs === 0 ? 0 : (100 * us) / totalUs }));
  return {
    totalMs: totalUs / 1000,
    self: rows(selfByKey),
    inclusive: rows(inclusive),
    owners: rows(ownerSelf),
    nearest: rows(nearest),
  };
}

function print(title: string, rows: readonly Row[]): void {
  process.stdout.write(`\n${title}\n`);
  for (const r of rows)
    process.stdout.write(`${r.pct.toFixed(1).padStart(6)}% ${r.ms.toFixed(0).padStart(8)} ms  ${r.key}\n`);
}

if (import.meta.main) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node bench/relay/cpuprofile.ts FILE.cpuprofile [--top N]\n');
    process.exit(2);
  }
  const topIdx = process.argv.indexOf('--top');
  const top = topIdx > 0 ? Number(process.argv[topIdx + 1] ?? 25) : 25;
  const s = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, top);
  process.stdout.write(`profile ${file}: ${s.totalMs.toFixed(0)} ms sampled\n`);
  print('self time by package / file', s.owners);
  print('self time by function', s.self);
  print('inclusive time by function', s.inclusive);
  print('time by nearest frame of the project (what made the call)', s.nearest);
}
