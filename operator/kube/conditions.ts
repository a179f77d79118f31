// The one condition helper (cert-manager's setCondition): it owns lastTransitionTime and observedGeneration.
// Pure: the caller passes the current status, the desired conditions and the clock reading; it gets back the
// conditions to write, whether anything changed (write only then), and the transitions (to emit Events for).

type ConditionStatus = 'True' | 'False' | 'Unknown';

/** metav1.Condition */
export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface DesiredCondition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

interface Transition {
  type: string;
  from: ConditionStatus | undefined;
  to: ConditionStatus;
  reason: string;
  message: string;
}

export interface ConditionUpdate {
  /** The desired conditions with lastTransitionTime and observedGeneration filled in (only the types we own). */
  conditions: Condition[];
  changed: boolean;
  transitions: Transition[];
}

export interface StatusLike {
  observedGeneration?: number;
  conditions?: readonly Partial<Condition>[];
}

/** RFC 3339 with second precision, as metav1.Time serializes. */
export function conditionTime(now: Date): string {
  return new Date(Math.floor(now.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

export function setConditions(
  status: StatusLike | undefined,
  desired: readonly DesiredCondition[],
  generation: number,
  now: Date,
): ConditionUpdate {
  const existing = new Map((status?.conditions ?? []).map((c) => [c.type, c]));
  let changed = status?.observedGeneration !== generation;
  const transitions: Transition[] = [];
  const conditions = desired.map((d): Condition => {
    const old = existing.get(d.type);
    const sameStatus = old?.status === d.status;
    if (!sameStatus)
      transitions.push({
        type: d.type,
        from: old?.status,
        to: d.status,
        reason: d.reason,
        message: d.message,
      });
    if (
      !sameStatus ||
      old?.reason !== d.reason ||
      old.message !== d.message ||
      old.observedGeneration !== generation
    )
      changed = true;
    return {
      type: d.type,
      status: d.status,
      reason: d.reason,
      message: d.message,
      observedGeneration: generation,
      lastTransitionTime:
        sameStatus && typeof old?.lastTransitionTime === 'string'
          ? old.lastTransitionTime
          : conditionTime(now),
    };
  });
  return { conditions, changed, transitions };
}
