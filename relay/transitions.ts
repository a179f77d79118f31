// The relay's transition timer: armed on the next instant at which the table it serves routes differently by the
// clock alone (a DeliveryPolicy stage ends, a TestRecipient expires: routing/schedule.ts nextTransition). Routing
// itself never waits for it: resolve() reads the clock at every RCPT, so mail follows the schedule to the
// millisecond. The timer keeps what people look at in step: the mailroute_policy_stage_info gauge and one log line
// per transition. A timer runs on the monotonic clock and the transition is a wall-clock instant, so a timer is armed
// for at most recheckMs (default a minute) and re-armed when it fires early: after a step of the wall clock forward
// (NTP at boot, a resumed virtual machine) the gauge reaches the stage in force within recheckMs, not the step's size
// later.
import type { Logger } from 'pino';
import type { Gauge } from 'prom-client';
import type { RoutingTable } from '../routing/model.ts';
import { nextTransition, stageAt } from '../routing/schedule.ts';
import { safeDelay } from '../routing/timer.ts';

export interface TransitionTimer {
  /** A new table is served: set the stage gauge for it and arm the timer on its next transition. */
  serve(table: RoutingTable): void;
  close(): void;
}

/** policy ("namespace/name") -> the stage in force, for every domain whose policy has stages. */
function stagesInForce(table: RoutingTable, now: Date): Map<string, string> {
  const out = new Map<string, string>();
  for (const route of Object.values(table.domains)) {
    if (route.policy === undefined || route.stages === undefined) continue;
    out.set(`${route.policy.namespace}/${route.policy.name}`, stageAt(route.stages, now).name);
  }
  return out;
}

export function startTransitionTimer(deps: {
  clock: () => Date;
  logger: Logger;
  /** labels policy, stage; value 1 for the stage in force */
  stageGauge: Gauge<'policy' | 'stage'>;
  /** The longest a timer waits before the wall clock is read again (default 60 s). */
  recheckMs?: number;
}): TransitionTimer {
  const recheckMs = deps.recheckMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  let table: RoutingTable | undefined;
  let shown = new Map<string, string>();

  const show = (now: Date, log: boolean): void => {
    if (table === undefined) return;
    const stages = stagesInForce(table, now);
    deps.stageGauge.reset();
    for (const [policy, stage] of stages) {
      deps.stageGauge.set({ policy, stage }, 1);
      const before = shown.get(policy);
      if (log && before !== undefined && before !== stage)
        deps.logger.info({ policy, from: before, stage }, 'routing stage changed');
    }
    shown = stages;
  };

  // show() and arm() take the same `now`: with two readings of the clock, the first could fall 1 ms before a
  // transition (the stage still in force) and the second on it (no transition after it), and the gauge would keep the
  // ended stage until the next table.
  const arm = (now: Date): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (table === undefined) return;
    const next = nextTransition(table, now);
    if (next === undefined) return;
    timer = setTimeout(fire, safeDelay(Math.min(next.getTime() - now.getTime(), recheckMs)));
    timer.unref();
  };

  function fire(): void {
    timer = undefined;
    const now = deps.clock();
    show(now, true);
    // Early (the recheck, or a timer that fires before the wall clock reaches the transition): the same transition
    // again. On time or late: the one after it.
    arm(now);
  }

  return {
    serve(t) {
      table = t;
      const now = deps.clock();
      show(now, false);
      arm(now);
    },
    close() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      table = undefined;
    },
  };
}
