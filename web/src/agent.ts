// The attributes an interpreter sets on itself, and reading them; and the one the page sets on itself for it.
import type { Participant } from 'livekit-client';
import { canonicalLanguage } from './language';

export const ATTR_AGENT_NAME = 'lk.agent.name'; // set by the framework: the agent name it was dispatched as
export const ATTR_AGENT_STATE = 'lk.agent.state';
export const ATTR_LANGUAGES = 'interpreter.languages';
export const ATTR_FAULTS = 'interpreter.faults';
export const ATTR_WARNINGS = 'interpreter.warnings';
export const ATTR_ALIVE = 'interpreter.alive'; // unix ms, rewritten every second while it interprets
export const ATTR_STARTED_AT = 'interpreter.started_at'; // unix ms its worker accepted the job
export const ATTR_DRAINING = 'interpreter.draining'; // "true": its worker stops, it hands the room over
export const ATTR_STANDBY = 'interpreter.standby'; // "true": taking a room over, listening, not interpreting yet
export const ATTR_BUDGET_REACHED = 'interpreter.budget_reached'; // unix ms interpreting resumes: the hour's budget is spent
export const TRACK_PREFIX = 'interpretation-';
// the page's own: the interpretation it plays (docs/room-contract.md), or LISTENING_TO_NONE
export const ATTR_LISTENING_TO = 'listening_to';
export const LISTENING_TO_NONE = 'none'; // not "": LiveKit deletes an attribute set to "" (= never declared)

/** Whether an attribute change is only a heartbeat (every second, per interpreter): nothing to show. */
export function onlyHeartbeat(changed: Record<string, string>): boolean {
  const keys = Object.keys(changed);
  return keys.length > 0 && keys.every((key) => key === ATTR_ALIVE);
}

/** The languages the interpreters publish a track for now (their `interpreter.languages`). */
export function interpretedLanguages(agents: readonly Participant[]): Set<string> {
  return new Set(
    agents.flatMap((agent) =>
      (agent.attributes[ATTR_LANGUAGES] ?? '')
        .split(',')
        .map((code) => canonicalLanguage(code))
        .filter((code): code is string => code !== undefined),
    ),
  );
}

/** While the room's budget for this hour is spent (`interpreter.budget_reached`), what to tell the listener. */
export function describeBudget(value: string | undefined): string {
  const resumes = Number(value);
  if (value === undefined || value.trim() === '' || !Number.isFinite(resumes)) return '';
  const at = new Date(resumes).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return `The room's interpretation budget for this hour is spent: interpretation resumes at ${at}. Captions of what is said go on.`;
}

/** `interpreter.warnings` is a JSON list of problems; anything else is shown as it is. */
export function parseWarnings(value: string | undefined): string[] {
  if (value === undefined || value.trim() === '') return [];
  try {
    const parsed: unknown = JSON.parse(value);
    if (Array.isArray(parsed)) return parsed.map((item) => String(item));
  } catch {
    // not JSON: fall through
  }
  return [value];
}

const FAULT_TEXT: Record<string, string> = {
  llm: 'translation is failing (no language model answers)',
  stt: 'speech recognition is failing for a speaker',
  tts: 'the interpreter’s voice is failing (captions still come)',
};

export function describeFaults(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value
    .split(',')
    .map((fault) => fault.trim())
    .filter((fault) => fault !== '')
    .map((fault) => FAULT_TEXT[fault] ?? fault);
}
