// The relay's transition timer: armed on the next instant at which the table it serves routes differently by the
// clock alone (a DeliveryPolicy stage ends, a TestRecipient expires: routing/schedule.ts nextTransition). Routing
// itself never waits for it: resolve() reads the clock at every RCPT, so mail follows the schedule to the
// millisecond. The timer keeps what people look at in step: the mailroute_policy_stage_info gauge and one log line
// per transition. Timers are armed through safeDelay (at most a day) and re-armed when they fire early.
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
}): TransitionTimer {
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

  const arm = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (table === undefined) return;
    const now = deps.clock();
    const next = nextTransition(table, now);
    if (next === undefined) return;
    timer = setTimeout(fire, safeDelay(next.getTime() - now.getTime()));
    timer.unref();
  };

  function fire(): void {
    timer = undefined;
    show(deps.clock(), true);
    arm(); // early (safeDelay's one-day cap): the same transition again; on time: the one after it
  }

  return {
    serve(t) {
      table = t;
      show(deps.clock(), false);
      arm();
    },
    close() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      table = undefined;
    },
  };
}
