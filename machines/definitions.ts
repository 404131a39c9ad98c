// Each machine's own definition as plain JSON, for the inspector to draw: its states (with their
// nesting), and every transition with its event name, guard and targets. Read from the xstate
// machine objects themselves, so the drawing is always the machine that runs. Pure.
//
// Event names are xstate's, except two made readable: eventless transitions are `always`, and
// delayed ones (`xstate.after.<delay>.<state>`) are `after <delay> ms` or `after <delayName>`.

import type { AnyStateMachine } from 'xstate'
import { auditorMachine } from './auditor.ts'
import { bookieLedgerMachine } from './bookieLedger.ts'
import { bookieLifecycleMachine } from './bookieLifecycle.ts'
import { recoveryMachine } from './recovery.ts'
import { replicatorMachine } from './replicator.ts'
import { tailMachine } from './tailReader.ts'
import { writerMachine } from './writer.ts'
import { logReaderMachine } from './logReader.ts'
import { logWriterMachine } from './logWriter.ts'
import { POSITION_MIN } from './logPosition.ts'

export interface TransitionDefinition {
  event: string
  /** Ids of the target states; empty: the transition only runs actions, the state stays. */
  targets: string[]
  /** The guard's name, `guarded` for an inline one, null without. */
  guard: string | null
  /** Leaves and re-enters its own state (runs exit and entry actions again). */
  reenter: boolean
}

export interface StateDefinition {
  /** Unique in the machine, e.g. `writer.changingEnsemble` (also the key of `state` values). */
  id: string
  key: string
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history'
  /** Id of the child entered first (compound states). */
  initial: string | null
  states: StateDefinition[]
  transitions: TransitionDefinition[]
}

export interface MachineDefinition {
  /** The inspection kind the machine runs under (`quire.inspect.<kind>.<id>`). */
  kind: string
  machineId: string
  root: StateDefinition
}

/** Which machine each inspection kind runs. */
export const MACHINES_BY_KIND: Readonly<Record<string, AnyStateMachine>> = {
  bookie: bookieLifecycleMachine,
  'bookie-ledger': bookieLedgerMachine,
  writer: writerMachine,
  reader: tailMachine,
  recovery: recoveryMachine,
  auditor: auditorMachine,
  replicator: replicatorMachine,
  // The log machines are made per log; their shape does not depend on it.
  'log-writer': logWriterMachine({ name: '', nowMs: () => 0 }),
  'log-reader': logReaderMachine({ name: '', from: POSITION_MIN, pollMs: 0 }),
}

/** The shape of xstate's StateNode this file reads (its public properties). */
interface NodeView {
  id: string
  key: string
  type: StateDefinition['type']
  states: Record<string, NodeView>
  initial?: { target: readonly NodeView[] }
  transitions: Map<string, readonly TransitionView[]>
  always?: readonly TransitionView[]
}

interface TransitionView {
  target?: readonly NodeView[]
  guard?: unknown
  reenter?: boolean
}

function guardName(guard: unknown): string | null {
  if (guard === undefined || guard === null) return null
  if (typeof guard === 'string') return guard
  if (typeof guard === 'object' && typeof (guard as { type?: unknown }).type === 'string') return (guard as { type: string }).type
  return 'guarded'
}

/** `xstate.after.250.tail.backoff` → `after 250 ms`; a named delay keeps its name. */
export function eventLabel(eventType: string, stateId: string): string {
  const prefix = 'xstate.after.'
  if (!eventType.startsWith(prefix)) return eventType
  let delay = eventType.slice(prefix.length)
  if (delay.endsWith(`.${stateId}`)) delay = delay.slice(0, -(stateId.length + 1))
  return /^\d+$/.test(delay) ? `after ${delay} ms` : `after ${delay}`
}

function transition(event: string, t: TransitionView): TransitionDefinition {
  return { event, targets: (t.target ?? []).map((n) => n.id), guard: guardName(t.guard), reenter: t.reenter === true }
}

function stateDefinition(node: NodeView): StateDefinition {
  const transitions: TransitionDefinition[] = []
  for (const [eventType, list] of node.transitions) {
    const event = eventLabel(eventType, node.id)
    for (const t of list) transitions.push(transition(event, t))
  }
  for (const t of node.always ?? []) transitions.push(transition('always', t))
  return {
    id: node.id,
    key: node.key,
    type: node.type,
    initial: node.type === 'compound' ? (node.initial?.target[0]?.id ?? null) : null,
    states: Object.values(node.states).map(stateDefinition),
    transitions,
  }
}

export function machineDefinition(kind: string, machine: AnyStateMachine): MachineDefinition {
  return { kind, machineId: machine.id, root: stateDefinition(machine.root as unknown as NodeView) }
}

/** Every machine's definition, by inspection kind. */
export function allDefinitions(): MachineDefinition[] {
  return Object.entries(MACHINES_BY_KIND).map(([kind, m]) => machineDefinition(kind, m))
}

/** Ids of the states active in a state value (`'open'`, `{leader: {work: 'marking', ...}}`). */
export function activeStateIds(machineId: string, value: unknown): string[] {
  const out: string[] = []
  const walk = (prefix: string, v: unknown): void => {
    if (typeof v === 'string') out.push(`${prefix}.${v}`)
    else if (v !== null && typeof v === 'object') {
      for (const [k, sub] of Object.entries(v as Record<string, unknown>)) {
        out.push(`${prefix}.${k}`)
        walk(`${prefix}.${k}`, sub)
      }
    }
  }
  walk(machineId, value)
  return out
}
