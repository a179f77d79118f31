// Splits one thread's samples from a whole-machine `perf record -g` into kernel and user time, and its kernel time
// by the system call it was in, per message (docs/perf.md §8). The input is `perf script -F tid,ip,sym` output: a
// line with the thread id, then the sample's call chain, innermost frame first, one frame ("ip symbol") per line.
// Usage:
//   perf record -e cpu-clock -F 2000 -a -g -o /tmp/perf.data -- sleep 5     # during a benchmark run
//   perf script -i /tmp/perf.data -F tid,ip,sym > /tmp/perf.txt
//   node bench/relay/perfscript.ts /tmp/perf.txt --tid TID --rate MSG_PER_S [--hz 2000] [--seconds 5] [--top 12]
import { readFileSync } from 'node:fs';

export interface Sample {
  readonly tid: number;
  /** The call chain, innermost first: each frame's address and symbol. */
  readonly frames: readonly { readonly ip: string; readonly sym: string }[];
}

/** The samples of a `perf script -F tid,ip,sym` output. */
export function parsePerfScript(text: string): Sample[] {
  const out: { tid: number; frames: { ip: string; sym: string }[] }[] = [];
  for (const line of text.split('\n')) {
    const head = /^\s*(\d+)\s*$/.exec(line);
    if (head) {
      out.push({ tid: Number(head[1]), frames: [] });
      continue;
    }
    const frame = /^\s+([0-9a-f]+)\s+(.*)$/.exec(line);
    const cur = out.at(-1);
    if (frame && cur) cur.frames.push({ ip: frame[1] ?? '', sym: (frame[2] ?? '').trim() });
  }
  return out.filter((s) => s.frames.length > 0);
}

/** Kernel addresses on x86-64 start at 0xffff8...; perf prints them with 16 hex digits. */
const isKernel = (ip: string): boolean => ip.length === 16 && ip.startsWith('ffff');

/**
 * The system call a kernel sample was in: the frame right under do_syscall_64 (x64_sys_call, the dispatcher, is
 * skipped); '(system call entry)' for do_syscall_64's own time; '(interrupt) ' and the innermost frame for kernel time
 * outside a system call.
 */
export function syscallOf(s: Sample): string {
  const frames = s.frames.filter((f) => f.sym !== 'x64_sys_call');
  const at = frames.findIndex((f) => f.sym === 'do_syscall_64');
  if (at > 0) return frames[at - 1]?.sym ?? '';
  if (at === 0) return '(system call entry)';
  return `(interrupt) ${frames[0]?.sym ?? ''}`;
}

export interface Split {
  /** µs per message on a core, in the kernel, in user space. */
  busy: number;
  kernel: number;
  user: number;
  /** Kernel µs per message by system call, largest first. */
  bySyscall: { name: string; us: number }[];
}

/** One thread's time per message: `hz` samples a second over `seconds`, at `rate` messages a second. */
export function splitThread(
  samples: readonly Sample[],
  tid: number,
  o: { hz: number; seconds: number; rate: number },
): Split {
  const usPerSample = 1e6 / o.hz / (o.seconds * o.rate);
  let kernel = 0;
  let user = 0;
  const by = new Map<string, number>();
  for (const s of samples) {
    if (s.tid !== tid) continue;
    if (isKernel(s.frames[0]?.ip ?? '')) {
      kernel++;
      const name = syscallOf(s);
      by.set(name, (by.get(name) ?? 0) + 1);
    } else user++;
  }
  return {
    busy: (kernel + user) * usPerSample,
    kernel: kernel * usPerSample,
    user: user * usPerSample,
    bySyscall: [...by]
      .map(([name, n]) => ({ name, us: n * usPerSample }))
      .sort((a, b) => b.us - a.us || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
  };
}

function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function main(args: readonly string[]): void {
  const file = args[0];
  const tid = Number(flag(args, '--tid'));
  const rate = Number(flag(args, '--rate'));
  if (file === undefined || file.startsWith('--') || !(tid > 0) || !(rate > 0)) {
    process.stderr.write(
      'usage: node bench/relay/perfscript.ts PERF_SCRIPT.txt --tid TID --rate MSG_PER_S [--hz 2000] [--seconds 5] [--top 12]\n',
    );
    process.exit(2);
  }
  const hz = Number(flag(args, '--hz') ?? 2000);
  const seconds = Number(flag(args, '--seconds') ?? 5);
  const top = Number(flag(args, '--top') ?? 12);
  const r = splitThread(parsePerfScript(readFileSync(file, 'utf8')), tid, { hz, seconds, rate });
  const f = (us: number): string => `${us.toFixed(1).padStart(7)} µs`;
  const lines = [
    `thread ${tid}, per message at ${rate} msg/s (${hz} Hz over ${seconds} s):`,
    `${f(r.busy)}  on a core`,
    `${f(r.kernel)}  in the kernel (${r.busy > 0 ? Math.round((100 * r.kernel) / r.busy) : 0} %)`,
    `${f(r.user)}  in user space`,
    'kernel time by system call:',
    ...r.bySyscall.slice(0, top).map((x) => `${f(x.us)}  ${x.name}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (import.meta.main) main(process.argv.slice(2));
