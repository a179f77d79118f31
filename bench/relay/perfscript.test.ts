import { describe, expect, it } from 'vitest';
import { parsePerfScript, splitThread, syscallOf } from './perfscript.ts';

// `perf script -F tid,ip,sym`: four samples of thread 10 (a socket write, a futex wake, an interrupt, user space)
// and one of thread 11
const TEXT = `10 
\tffffffff82250979 _raw_spin_unlock_irqrestore
\tffffffff81e7b48e sock_def_readable
\tffffffff816dcb43 ksys_write
\tffffffff81002e6a x64_sys_call
\tffffffff82240a2e do_syscall_64
\tffffffff82400130 entry_SYSCALL_64_after_hwframe
\t    7fbdf7e7f48e __write

10 
\tffffffff81421d0e futex_wake
\tffffffff8142239a __x64_sys_futex
\tffffffff82240a2e do_syscall_64
\t    7fbdf7e7f48e pthread_cond_signal@@GLIBC_2.3.2

10 
\tffffffff82243e4f irqentry_exit_to_user_mode
\tffffffff8240122a asm_sysvec_apic_timer_interrupt
\t    7fbdd81e82ba [unknown]

10 
\t         16e648e Builtins_CreateDataProperty
\t         166bb19 Builtins_CopyDataPropertiesWithExcludedPropertiesOnStack

11 
\tffffffff816dcb43 ksys_write
\tffffffff82240a2e do_syscall_64
`;

describe('perfscript', () => {
  it('reads each sample with its thread and call chain, innermost frame first', () => {
    const samples = parsePerfScript(TEXT);
    expect(samples.map((s) => s.tid)).toEqual([10, 10, 10, 10, 11]);
    expect(samples[0]?.frames[0]).toEqual({ ip: 'ffffffff82250979', sym: '_raw_spin_unlock_irqrestore' });
    expect(samples[3]?.frames.map((f) => f.sym)).toEqual([
      'Builtins_CreateDataProperty',
      'Builtins_CopyDataPropertiesWithExcludedPropertiesOnStack',
    ]);
  });

  it.each([
    [0, 'ksys_write'],
    [1, '__x64_sys_futex'],
    [2, '(interrupt) irqentry_exit_to_user_mode'],
  ])('sample %i is in %s', (i, name) => {
    const s = parsePerfScript(TEXT)[i];
    if (s === undefined) throw new Error('no sample');
    expect(syscallOf(s)).toBe(name);
  });

  it("splits one thread's samples into kernel and user time per message, the kernel by system call", () => {
    // 4 samples of thread 10 at 1,000 Hz over 2 s at 1 message a second: 500 µs per sample and message
    const r = splitThread(parsePerfScript(TEXT), 10, { hz: 1000, seconds: 2, rate: 1 });
    expect(r.busy).toBe(2000);
    expect(r.kernel).toBe(1500);
    expect(r.user).toBe(500);
    expect(r.bySyscall).toEqual([
      { name: '(interrupt) irqentry_exit_to_user_mode', us: 500 },
      { name: '__x64_sys_futex', us: 500 },
      { name: 'ksys_write', us: 500 },
    ]);
    expect(splitThread(parsePerfScript(TEXT), 12, { hz: 1000, seconds: 2, rate: 1 }).busy).toBe(0);
  });
});
