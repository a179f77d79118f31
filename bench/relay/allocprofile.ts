// Summarizes an allocation profile written by alloc-sampler.ts: bytes allocated by package or file (of the frame that
// allocated), by function, and by the nearest frame of the project's own code on the stack (what in the relay caused
// a library's allocation). Usage: node bench/relay/allocprofile.ts FILE.json [--top N]
import { readFileSync } from 'node:fs';
import { isOwnUrl, ownerOf } from './cpuprofile.ts';

interface Frame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface AllocNode {
  id: number;
  callFrame: Frame;
  children?: AllocNode[];
}
export interface AllocProfile {
  head: AllocNode;
  samples: { size: number; nodeId: number }[];
}

export interface AllocRow {
  readonly key: string;
  readonly bytes: number;
  readonly pct: number;
}

const name = (f: Frame): string =>
  `${f.functionName === '' ? '(anonymous)' : f.functionName}${f.url === '' ? '' : ` ${ownerOf(f.url)}:${f.lineNumber + 1}`}`;

/** Totals of sampled bytes by owner, by allocating function, and by nearest own frame. Pure. */
export function summarizeAllocations(
  p: AllocProfile,
  top: number,
): { totalBytes: number; owners: AllocRow[]; functions: AllocRow[]; ownFrames: AllocRow[] } {
  const bytes = new Map<number, number>();
  for (const s of p.samples) bytes.set(s.nodeId, (bytes.get(s.nodeId) ?? 0) + s.size);
  const owners = new Map<string, number>();
  const functions = new Map<string, number>();
  const ownFrames = new Map<string, number>();
  let total = 0;
  const add = (m: Map<string, number>, k: string, b: number): void => {
    m.set(k, (m.get(k) ?? 0) + b);
  };
  const walk = (n: AllocNode, nearestOwn: string | undefined, nearestLib: string | undefined): void => {
    const f = n.callFrame;
    const own = isOwnUrl(f.url) ? name(f) : nearestOwn;
    const lib = f.url.includes('/node_modules/') ? ownerOf(f.url) : nearestLib;
    const b = bytes.get(n.id) ?? 0;
    if (b > 0) {
      total += b;
      add(owners, f.url === '' ? '(native/VM)' : ownerOf(f.url), b);
      add(functions, name(f), b);
      add(ownFrames, own ?? `[no own frame] ${lib ?? 'node'}`, b);
    }
    for (const c of n.children ?? []) walk(c, own, lib);
  };
  walk(p.head, undefined, undefined);
  const rows = (m: Map<string, number>): AllocRow[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, v]) => ({ key, bytes: v, pct: total === 0 ? 0 : (100 * v) / total }));
  return { totalBytes: total, owners: rows(owners), functions: rows(functions), ownFrames: rows(ownFrames) };
}

function print(title: string, rows: readonly AllocRow[]): void {
  process.stdout.write(`\n${title}\n`);
  for (const r of rows)
    process.stdout.write(
      `${r.pct.toFixed(1).padStart(6)}% ${(r.bytes / 1048576).toFixed(1).padStart(8)} MiB  ${r.key}\n`,
    );
}

if (import.meta.main) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node bench/relay/allocprofile.ts FILE.json [--top N]\n');
    process.exit(2);
  }
  const topIdx = process.argv.indexOf('--top');
  const top = topIdx > 0 ? Number(process.argv[topIdx + 1] ?? 25) : 25;
  const s = summarizeAllocations(JSON.parse(readFileSync(file, 'utf8')) as AllocProfile, top);
  process.stdout.write(`allocations ${file}: ${(s.totalBytes / 1048576).toFixed(0)} MiB sampled\n`);
  print('by package / file', s.owners);
  print('by function', s.functions);
  print('by nearest frame of the project (what caused it)', s.ownFrames);
}
